//! The passes attribution asks for. The model owns branching from a clean pass
//! and its tapes: a caller says which site values to replace or scale and which
//! gradients it wants, and gets logits or [`Gradients`] back.
//!
//! Branching: a sequence that differs from an image's clean pass only in block
//! `l`'s neuron rows equals the clean pass up to block `l`'s FFN, so it is run
//! from the stream leaving block `l`, rebuilt from the clean one (those rows'
//! output recomputed from the replaced values); everything below is shared.

use super::backward::Gradients;
use super::forward::{BranchPoint, Keep};
use super::kernels;
use super::rows::select_rows;
use super::site::{Action, Intervention, Site};
use super::tape::{BlockTape, Tape};
use super::vit::{Activations, CleanTrace, Vit};

impl Vit {
    /// The unmodified forward pass of one image, keeping what interventions branch from.
    pub fn clean_forward(&self, pixels: &[f32]) -> CleanTrace {
        let keep = Keep {
            tape: false,
            residuals: true,
            branch_point: None,
            neurons: false,
        };
        let out = self.forward(self.embed(pixels), 0, &[], keep);
        CleanTrace {
            residual: out.residual,
            mid: out.mid,
            neurons: out.neurons,
            logits: out.logits,
        }
    }

    /// What a scan of a dataset reads from `x = [S, tokens, hidden]` (embedded
    /// images): every block's neuron values at the neuron site, the last block's
    /// output and the logits, in one pass with nothing else kept.
    pub fn activations(&self, x: Vec<f32>) -> Activations {
        let keep = Keep {
            neurons: true,
            ..Keep::default()
        };
        let out = self.forward(x, 0, &[], keep);
        Activations {
            neurons: out.neurons,
            output: out.output,
            logits: out.logits,
        }
    }

    /// Logits `[S, classes]` of `x = [S, tokens, hidden]` (embedded images) with
    /// `interventions`.
    pub fn logits(&self, x: Vec<f32>, interventions: &[Intervention]) -> Vec<f32> {
        self.forward(x, 0, interventions, Keep::default()).logits
    }

    /// Gradients at `sites` of each sequence's target probability, for `x = [S,
    /// tokens, hidden]` entering block `from` (the blocks below are not run).
    pub fn gradients(
        &self,
        x: Vec<f32>,
        from: usize,
        interventions: &[Intervention],
        targets: &[usize],
        sites: &[Site],
    ) -> Gradients {
        assert!(sites.iter().all(|s| s.block >= from), "a site below `from`");
        let out = self.forward(x, from, interventions, Keep::TAPE);
        let tape = out.tape.expect("tape kept");
        self.backward(&tape, &out.logits, targets, sites, false).0
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
        let variants = targets.len() / cleans.len().max(1);
        let x: Vec<f32> = cleans
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.residual[from].as_slice(), variants).flatten())
            .copied()
            .collect();
        self.gradients(x, from, interventions, targets, sites)
    }

    /// Every image's clean pass run `targets.len() / cleans.len()` times (its
    /// variants, in order), the neuron rows of each replaced block set to the given
    /// values (`[S, rows, intermediate]`, [`Action::Replace`] only). Returns the
    /// gradients at every replaced site.
    pub fn branched_gradients(
        &self,
        cleans: &[&CleanTrace],
        replacements: &[Intervention],
        targets: &[usize],
    ) -> Gradients {
        let (lowest, rest) = replacements
            .iter()
            .min_by_key(|r| r.site.block)
            .map(|low| {
                let rest: Vec<Intervention> = replacements
                    .iter()
                    .filter(|r| r.site != low.site)
                    .copied()
                    .collect();
                (*low, rest)
            })
            .expect("at least one replacement");
        let Action::Replace(values) = lowest.action else {
            panic!("branching needs replaced values");
        };
        let layer = lowest.site.block;
        let x = self.branch(cleans, layer, values);
        let out = self.forward(x, layer + 1, &rest, Keep::TAPE);
        let tape = out.tape.expect("tape kept");
        let sites: Vec<Site> = rest.iter().map(|r| r.site).collect();
        let (mut grads, input) = self.backward(&tape, &out.logits, targets, &sites, true);
        let input = input.expect("input gradient");
        grads.insert(lowest.site, self.branch_gradient(layer, &input));
        grads
    }

    /// Layer-progressive passes over the clean passes of `cleans` (each run as
    /// many variants as the rows given to a pass hold): see [`Progression`].
    pub fn progression<'a>(&'a self, cleans: &[&'a CleanTrace]) -> Progression<'a> {
        Progression {
            vit: self,
            cleans: cleans.to_vec(),
            layer: 0,
            sequences: 0,
            settled: Vec::new(),
            branch_point: None,
        }
    }

    /// The stream leaving block `layer` for every image's variants, which differ
    /// only in that block's neuron rows, `rows = [images * variants, rows, f]`.
    fn branch(&self, cleans: &[&CleanTrace], layer: usize, rows: &[f32]) -> Vec<f32> {
        let per_image = rows.len() / cleans.len();
        let (t, d) = (self.config.tokens(), self.config.hidden);
        let site = self.config.rows(self.neuron_tokens);
        let mut x = Vec::with_capacity(rows.len() / self.config.intermediate / site.len() * t * d);
        for (clean, rows) in cleans.iter().zip(rows.chunks_exact(per_image)) {
            let start = x.len();
            let variants = per_image / (site.len() * self.config.intermediate);
            for _ in 0..variants {
                x.extend_from_slice(&clean.residual[layer + 1]);
            }
            let mid = &clean.mid[layer][site.start * d..site.end * d];
            self.set_site_output(&mut x[start..], layer, mid, rows);
        }
        x
    }

    /// Sets the neuron rows of each sequence of `x` (`[S, tokens, hidden]`, the
    /// stream leaving block `layer`) to the block's output when those rows' FFN
    /// post-activation is `rows` (`[S, rows, intermediate]`) and the stream there after
    /// attention is `mid` (`[S, rows, hidden]`, or one `[rows, hidden]` shared by all).
    fn set_site_output(&self, x: &mut [f32], layer: usize, mid: &[f32], rows: &[f32]) {
        let c = &self.config;
        let (t, d, f) = (c.tokens(), c.hidden, c.intermediate);
        let site = c.rows(self.neuron_tokens);
        let r = site.len();
        let s = rows.len() / (r * f);
        assert_eq!(x.len(), s * t * d, "one stream per row set");
        let fc2 = &self.blocks[layer].fc2;
        let mut out = vec![0f32; s * r * d];
        kernels::linear(&mut out, rows, s * r, &fc2.w, &fc2.b);
        for (i, (seq, delta)) in x
            .chunks_exact_mut(t * d)
            .zip(out.chunks_exact(r * d))
            .enumerate()
        {
            let mid = if mid.len() == r * d {
                mid
            } else {
                &mid[i * r * d..(i + 1) * r * d]
            };
            for ((v, m), dl) in seq[site.start * d..site.end * d]
                .iter_mut()
                .zip(mid)
                .zip(delta)
            {
                *v = m + dl;
            }
        }
    }

    /// Gradient w.r.t. block `layer`'s neuron rows from the gradient of the stream
    /// leaving it (`[S, tokens, hidden]`, as [`Vit::branch`] made it).
    fn branch_gradient(&self, layer: usize, stream_grad: &[f32]) -> Vec<f32> {
        let c = &self.config;
        let (t, d, f) = (c.tokens(), c.hidden, c.intermediate);
        let site = c.rows(self.neuron_tokens);
        let s = stream_grad.len() / (t * d);
        let rows = select_rows(stream_grad, s, t, site.clone(), d);
        let mut g = vec![0f32; s * site.len() * f];
        kernels::linear_backward(&mut g, &rows, s * site.len(), &self.blocks[layer].fc2.w, d);
        g
    }
}

/// Layer-progressive passes, `l = 0, 1, ..., layers` in order: pass `l` replaces
/// the neuron rows of every layer up to `l`. Those of layer `l` are given to pass
/// `l` and may change once, in pass `l + 1`; from then on they are settled. So
/// blocks `1..=l` see in every later pass what they saw in pass `l`: their tapes
/// and block `l`'s output are kept, and pass `l + 1` runs forward from block
/// `l + 1` only.
///
/// Between passes the sequences may be rearranged ([`Progression::select`]): beam
/// search continues several partial paths of an image from one.
pub struct Progression<'a> {
    vit: &'a Vit,
    cleans: Vec<&'a CleanTrace>,
    layer: usize,
    /// Sequences of the last pass.
    sequences: usize,
    settled: Vec<BlockTape>,
    branch_point: Option<BranchPoint>,
}

impl Progression<'_> {
    /// The layer the next pass replaces last.
    pub fn layer(&self) -> usize {
        self.layer
    }

    /// Runs the next pass `l`: layer `l - 1`'s rows settle to `settled` (ignored in
    /// pass 0) and layer `l`'s are `top` (ignored in the last pass, `l = layers`).
    /// Rows are `[images * variants, rows, intermediate]`. Returns the gradients at
    /// the neuron sites of layers `0..=min(l, layers - 1)`.
    pub fn pass(&mut self, settled: &[f32], top: &[f32], targets: &[usize]) -> Gradients {
        let vit = self.vit;
        let (l, layers) = (self.layer, vit.config.layers);
        let x = match self.branch_point.take() {
            Some(bp) => {
                let mut x = bp.stream;
                vit.set_site_output(&mut x, l - 1, &bp.mid_rows, settled);
                x
            }
            None => vit.branch(&self.cleans, 0, if l == 0 { top } else { settled }),
        };
        let inner = (1..layers).contains(&l);
        let replace = [Intervention {
            site: vit.neuron_site(l),
            action: Action::Replace(top),
        }];
        let keep = Keep {
            tape: true,
            residuals: false,
            branch_point: inner.then_some(l),
            neurons: false,
        };
        let out = vit.forward(x, l.max(1), if inner { &replace } else { &[] }, keep);
        let fresh = out.tape.expect("tape kept");
        let mut blocks = std::mem::take(&mut self.settled);
        blocks.extend(fresh.blocks);
        let tape = Tape {
            from: 1,
            blocks,
            readout: fresh.readout,
        };
        let sites: Vec<Site> = (1..=l.min(layers - 1))
            .map(|j| vit.neuron_site(j))
            .collect();
        let (mut grads, input) = vit.backward(&tape, &out.logits, targets, &sites, true);
        let input = input.expect("input gradient");
        grads.insert(vit.neuron_site(0), vit.branch_gradient(0, &input));
        self.sequences = targets.len();
        if l >= 1 {
            self.settled = tape.blocks;
            self.settled.truncate(l);
            self.branch_point = out.branch_point;
        }
        self.layer += 1;
        grads
    }

    /// Rearranges the kept state for the next pass: its variant `v` (`run`
    /// consecutive sequences, one per integration step) continues variant
    /// `parents[v]` of the last pass. Each image's variants must stay its own.
    pub fn select(&mut self, parents: &[usize], run: usize) {
        let unchanged = parents.len() * run == self.sequences
            && parents.iter().enumerate().all(|(v, &p)| v == p);
        if unchanged {
            return;
        }
        let order: Vec<usize> = parents
            .iter()
            .flat_map(|&p| p * run..(p + 1) * run)
            .collect();
        let s = self.sequences;
        self.settled = std::mem::take(&mut self.settled)
            .into_iter()
            .map(|b| b.select(s, &order))
            .collect();
        self.branch_point = self.branch_point.take().map(|bp| BranchPoint {
            stream: gather(&bp.stream, s, &order),
            mid_rows: gather(&bp.mid_rows, s, &order),
        });
        self.sequences = order.len();
    }
}

impl BlockTape {
    /// The tape of sequences `order` (indices into this tape's `s` sequences).
    fn select(self, s: usize, order: &[usize]) -> BlockTape {
        let BlockTape {
            q_rows,
            xhat1,
            rstd1,
            qkv,
            probs,
            xhat2,
            rstd2,
            act_grad,
            replaced,
            z_replaced,
        } = self;
        BlockTape {
            q_rows,
            xhat1: gather(&xhat1, s, order),
            rstd1: gather(&rstd1, s, order),
            qkv: gather(&qkv, s, order),
            probs: gather(&probs, s, order),
            xhat2: gather(&xhat2, s, order),
            rstd2: gather(&rstd2, s, order),
            act_grad: gather(&act_grad, s, order),
            replaced,
            z_replaced,
        }
    }
}

/// The per-sequence parts of `v` (`s` sequences, each the same size) in `order`.
fn gather(v: &[f32], s: usize, order: &[usize]) -> Vec<f32> {
    let size = v.len() / s;
    order
        .iter()
        .flat_map(|&i| &v[i * size..(i + 1) * size])
        .copied()
        .collect()
}
