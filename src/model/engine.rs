//! The passes attribution asks for, on the model's executor. A caller says which
//! site values to replace or scale and which gradients it wants, and gets logits
//! or [`Gradients`] back; inputs and outputs are host values, whatever executor
//! runs the pass ([`Vit::use_gpu`]). The passes themselves ([`Passes`]: forward,
//! backward, readout, branching) are written once over [`Executor`].

use super::backward::Gradients;
use super::branch::{Progression, Progressive};
use super::exec::{Cpu, Executor};
use super::forward::Keep;
use super::site::{Intervention, Site};
use super::vit::{Activations, CleanTrace, Vit, Weights};
use std::ops::Range;

/// One model's passes on one executor.
pub(super) struct Passes<'a, E: Executor> {
    pub vit: &'a Vit,
    pub e: &'a E,
    /// The model's weights as `e` holds them.
    pub w: &'a Weights<E::Tensor>,
}

impl<'a, E: Executor> Passes<'a, E> {
    pub fn new(vit: &'a Vit, e: &'a E) -> Self {
        Passes {
            vit,
            e,
            w: e.weights(vit),
        }
    }
}

/// `rows` limited to the first `q` rows (those a block computes).
pub(super) fn clip(rows: Range<usize>, q: usize) -> Range<usize> {
    rows.start.min(q)..rows.end.min(q)
}

/// The passes of [`Vit`]'s public API on some executor: what [`Vit`] dispatches
/// to. Every executor has them ([`Passes`] written once).
pub(super) trait Engine: Send + Sync {
    fn clean_forward(&self, vit: &Vit, pixels: &[f32]) -> CleanTrace;
    fn activations(&self, vit: &Vit, pixels: &[f32]) -> Activations;
    fn logits(&self, vit: &Vit, pixels: &[f32], interventions: &[Intervention]) -> Vec<f32>;
    fn gradients(&self, vit: &Vit, pixels: &[f32], ask: Asked) -> Gradients;
    fn gradients_from_clean(&self, vit: &Vit, cleans: &[&CleanTrace], ask: Asked) -> Gradients;
    fn branched_gradients(
        &self,
        vit: &Vit,
        cleans: &[&CleanTrace],
        replacements: &[Intervention],
        targets: &[usize],
    ) -> Gradients;
    fn progression<'a>(&'a self, vit: &'a Vit, cleans: &[&'a CleanTrace]) -> Progression<'a>;
}

/// What a gradient pass is asked for: the sequences enter block `from` with
/// `interventions`; the gradients of `targets`' probabilities at `sites`.
pub(super) struct Asked<'a> {
    pub from: usize,
    pub interventions: &'a [Intervention<'a>],
    pub targets: &'a [usize],
    pub sites: &'a [Site],
}

impl<E: Executor> Engine for E {
    fn clean_forward(&self, vit: &Vit, pixels: &[f32]) -> CleanTrace {
        let p = Passes::new(vit, self);
        let keep = Keep {
            residuals: true,
            ..Keep::default()
        };
        let out = p.forward(p.embed(pixels), 0, &[], keep);
        let host = |ts: Vec<E::Tensor>| ts.into_iter().map(|t| self.take_host(t)).collect();
        CleanTrace {
            residual: host(out.residual),
            mid: host(out.mid),
            neurons: host(out.neurons),
            logits: out.logits,
        }
    }

    fn activations(&self, vit: &Vit, pixels: &[f32]) -> Activations {
        let p = Passes::new(vit, self);
        let keep = Keep {
            neurons: true,
            ..Keep::default()
        };
        let out = p.forward(p.embed(pixels), 0, &[], keep);
        Activations {
            neurons: out.neurons.into_iter().map(|t| self.take_host(t)).collect(),
            head: out.head.map(|t| self.take_host(t)),
            output: self.take_host(out.output.expect("output kept")),
            logits: out.logits,
        }
    }

    fn logits(&self, vit: &Vit, pixels: &[f32], interventions: &[Intervention]) -> Vec<f32> {
        let p = Passes::new(vit, self);
        p.forward(p.embed(pixels), 0, interventions, Keep::default())
            .logits
    }

    fn gradients(&self, vit: &Vit, pixels: &[f32], ask: Asked) -> Gradients {
        let p = Passes::new(vit, self);
        p.gradients(p.embed(pixels), ask)
    }

    fn gradients_from_clean(&self, vit: &Vit, cleans: &[&CleanTrace], ask: Asked) -> Gradients {
        let p = Passes::new(vit, self);
        let variants = ask.targets.len() / cleans.len().max(1);
        let x = p.variants(cleans, variants, |c| &c.residual[ask.from]);
        p.gradients(x, ask)
    }

    fn branched_gradients(
        &self,
        vit: &Vit,
        cleans: &[&CleanTrace],
        replacements: &[Intervention],
        targets: &[usize],
    ) -> Gradients {
        Passes::new(vit, self).branched_gradients(cleans, replacements, targets)
    }

    fn progression<'a>(&'a self, vit: &'a Vit, cleans: &[&'a CleanTrace]) -> Progression<'a> {
        Progression::new(Progressive::new(Passes::new(vit, self), cleans))
    }
}

impl<E: Executor> Passes<'_, E> {
    /// [`Engine::gradients`] for the embedded sequences `x`.
    fn gradients(&self, x: E::Tensor, ask: Asked) -> Gradients {
        assert!(
            ask.sites.iter().all(|s| s.block >= ask.from),
            "a site below `from`"
        );
        let out = self.forward(x, ask.from, ask.interventions, Keep::TAPE);
        let tape = out.tape.expect("tape kept");
        self.backward(&tape, &out.logits, ask.targets, ask.sites, false)
            .0
    }

    /// `variants` copies of each clean pass's `part` (`[tokens, hidden]`), in order.
    pub(super) fn variants(
        &self,
        cleans: &[&CleanTrace],
        variants: usize,
        part: impl Fn(&CleanTrace) -> &[f32],
    ) -> E::Tensor {
        let parts: Vec<f32> = cleans.iter().flat_map(|c| part(c)).copied().collect();
        let order: Vec<usize> = (0..cleans.len())
            .flat_map(|i| std::iter::repeat_n(i, variants))
            .collect();
        self.e
            .gather(&self.e.upload(parts), cleans.len().max(1), &order)
    }
}

impl Vit {
    /// Where this model's passes run.
    fn engine(&self) -> &dyn Engine {
        match &self.gpu {
            Some(gpu) => gpu.as_ref(),
            None => &Cpu,
        }
    }

    /// The unmodified forward pass of one image (normalised CHW pixels), keeping
    /// what interventions branch from.
    pub fn clean_forward(&self, pixels: &[f32]) -> CleanTrace {
        self.engine().clean_forward(self, pixels)
    }

    /// What a scan of a dataset reads from `S` images (normalised CHW pixels, back
    /// to back): every block's neuron values at the neuron site, the last block's
    /// output and the logits, in one pass with nothing else kept.
    pub fn activations(&self, pixels: &[f32]) -> Activations {
        self.engine().activations(self, pixels)
    }

    /// Logits `[S, classes]` of `S` images with `interventions`.
    pub fn logits(&self, pixels: &[f32], interventions: &[Intervention]) -> Vec<f32> {
        self.engine().logits(self, pixels, interventions)
    }

    /// Gradients at `sites` of each sequence's target probability, for `S` images
    /// embedded and entering block `from` (the blocks below are not run).
    pub fn gradients(
        &self,
        pixels: &[f32],
        from: usize,
        interventions: &[Intervention],
        targets: &[usize],
        sites: &[Site],
    ) -> Gradients {
        let ask = Asked {
            from,
            interventions,
            targets,
            sites,
        };
        self.engine().gradients(self, pixels, ask)
    }

    /// [`Vit::gradients`] for every image's clean pass rerun from block `from` (the
    /// stream entering it shared) as `targets.len() / cleans.len()` variants each.
    pub fn gradients_from_clean(
        &self,
        cleans: &[&CleanTrace],
        from: usize,
        interventions: &[Intervention],
        targets: &[usize],
        sites: &[Site],
    ) -> Gradients {
        let ask = Asked {
            from,
            interventions,
            targets,
            sites,
        };
        self.engine().gradients_from_clean(self, cleans, ask)
    }

    /// Every image's clean pass run `targets.len() / cleans.len()` times (its
    /// variants, in order), the neuron rows of each replaced block set to the given
    /// values (`[S, rows, intermediate]`, [`super::Action::Replace`] only). Returns
    /// the gradients at every replaced site.
    pub fn branched_gradients(
        &self,
        cleans: &[&CleanTrace],
        replacements: &[Intervention],
        targets: &[usize],
    ) -> Gradients {
        self.engine()
            .branched_gradients(self, cleans, replacements, targets)
    }

    /// Images per batch for passes of `sequences` sequences per image with a tape
    /// (integration steps x partial paths): on the CPU, as many as keep about 8k
    /// token rows per pass (at most 16); on a GPU, as many as its memory and its
    /// largest tensor allow (at most 256).
    pub fn images_per_batch(&self, sequences: usize) -> usize {
        let c = &self.config;
        let (t, d, h) = (c.tokens(), c.hidden, c.heads);
        let Some(device) = self.gpu() else {
            return (8192 / (t * sequences).max(1)).clamp(1, 16);
        };
        let f1 = c.family.activation.fc1_width(c.intermediate);
        // Kept per block (norm statistics, qkv, attention weights, fc1's derivative)
        // and what one block's pass holds besides.
        let tape = t * (5 * d + f1 + 2) + h * t * t;
        let transient = t * (6 * d + 2 * f1) + 2 * h * t * t;
        let bytes = 4 * (c.layers * tape + transient) * sequences;
        let largest = (t * 3 * d).max(t * f1).max(h * t * t) * sequences;
        let by_memory = device.pass_budget() as usize / bytes.max(1);
        let by_tensor = device.max_tensor() / largest.max(1);
        by_memory.min(by_tensor).clamp(1, 256)
    }

    /// Layer-progressive passes over the clean passes of `cleans` (each run as
    /// many variants as the rows given to a pass hold): see [`Progression`].
    pub fn progression<'a>(&'a self, cleans: &[&'a CleanTrace]) -> Progression<'a> {
        self.engine().progression(self, cleans)
    }
}
