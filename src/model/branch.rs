//! Branching from a clean pass: a sequence that differs from an image's clean
//! pass only in block `l`'s neuron rows equals the clean pass up to block `l`'s
//! FFN, so it is run from the stream leaving block `l`, rebuilt from the clean one
//! (those rows' output recomputed from the replaced values); everything below is
//! shared. The layer-progressive passes of the path search ([`Progression`]) keep
//! the tapes of the settled blocks from one pass to the next.

use super::backward::Gradients;
use super::engine::Passes;
use super::exec::{Batch, Executor, Tensor, Write};
use super::forward::{BranchPoint, Keep};
use super::site::{Action, Intervention, Site};
use super::tape::{BlockTape, Tape};
use super::vit::CleanTrace;

impl<E: Executor> Passes<'_, E> {
    /// See [`super::Vit::branched_gradients`].
    pub(super) fn branched_gradients(
        &self,
        cleans: &[&CleanTrace],
        replacements: &[Intervention],
        targets: &[usize],
    ) -> Gradients {
        let lowest = *replacements
            .iter()
            .min_by_key(|r| r.site.block)
            .expect("at least one replacement");
        let rest: Vec<Intervention> = replacements
            .iter()
            .filter(|r| r.site != lowest.site)
            .copied()
            .collect();
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

    /// The stream leaving block `layer` for every image's variants, which differ
    /// only in that block's neuron rows, `rows = [images * variants, rows, f]`.
    fn branch(&self, cleans: &[&CleanTrace], layer: usize, rows: &[f32]) -> E::Tensor {
        let c = &self.vit.config;
        let site = c.rows(self.vit.neuron_tokens);
        let (d, per_row) = (c.hidden, site.len() * c.intermediate);
        let variants = rows.len() / cleans.len() / per_row;
        let mut x = self.variants(cleans, variants, |c| &c.residual[layer + 1]);
        let mid = self.variants(cleans, variants, |c| {
            &c.mid[layer][site.start * d..site.end * d]
        });
        self.set_site_output(&mut x, layer, &mid, &self.e.upload(rows.to_vec()));
        x
    }

    /// Sets the neuron rows of each sequence of `x` (`[S, tokens, hidden]`, the
    /// stream leaving block `layer`) to the block's output when those rows' FFN
    /// post-activation is `rows` (`[S, rows, intermediate]`) and the stream there after
    /// attention is `mid` (`[S, rows, hidden]`).
    fn set_site_output(&self, x: &mut E::Tensor, layer: usize, mid: &E::Tensor, rows: &E::Tensor) {
        let c = &self.vit.config;
        let site = c.rows(self.vit.neuron_tokens);
        let (t, d, r) = (c.tokens(), c.hidden, site.len());
        let s = rows.numel() / (r * c.intermediate);
        let mut out = self.e.linear(rows, s * r, &self.w.blocks[layer].fc2);
        let packed = Batch::new(s, r, d);
        self.e.write_rows(&mut out, packed, 0..r, mid, Write::Add);
        self.e
            .write_rows(x, Batch::new(s, t, d), site, &out, Write::Set);
    }

    /// Gradient w.r.t. block `layer`'s neuron rows from the gradient of the stream
    /// leaving it (`[S, tokens, hidden]`, as [`Passes::branch`] made it).
    fn branch_gradient(&self, layer: usize, stream_grad: &E::Tensor) -> Vec<f32> {
        let c = &self.vit.config;
        let (t, d) = (c.tokens(), c.hidden);
        let site = c.rows(self.vit.neuron_tokens);
        let s = stream_grad.numel() / (t * d);
        let rows = self.e.rows(stream_grad, Batch::new(s, t, d), site.clone());
        let fc2 = &self.w.blocks[layer].fc2.w;
        self.e
            .take_host(self.e.linear_backward(&rows, s * site.len(), fc2, d))
    }
}

/// Layer-progressive passes, `l = 0, 1, ..., layers` in order: pass `l` replaces
/// the neuron rows of every layer up to `l`. Those of layer `l` are given to pass
/// `l` and may change once, in pass `l + 1`; from then on they are settled. So
/// blocks `1..=l` see in every later pass what they saw in pass `l`: their tapes
/// and block `l`'s output are kept (by the executor), and pass `l + 1` runs forward
/// from block `l + 1` only.
///
/// Between passes the sequences may be rearranged ([`Progression::select`]): beam
/// search continues several partial paths of an image from one.
pub struct Progression<'a>(Box<dyn Steps + 'a>);

/// What a [`Progression`] does, on any executor.
pub(super) trait Steps {
    fn layer(&self) -> usize;
    fn pass(&mut self, settled: &[f32], top: &[f32], targets: &[usize]) -> Gradients;
    fn select(&mut self, parents: &[usize], run: usize);
}

impl<'a> Progression<'a> {
    pub(super) fn new(steps: impl Steps + 'a) -> Progression<'a> {
        Progression(Box::new(steps))
    }

    /// The layer the next pass replaces last.
    pub fn layer(&self) -> usize {
        self.0.layer()
    }

    /// Runs the next pass `l`: layer `l - 1`'s rows settle to `settled` (ignored in
    /// pass 0) and layer `l`'s are `top` (ignored in the last pass, `l = layers`).
    /// Rows are `[images * variants, rows, intermediate]`. Returns the gradients at
    /// the neuron sites of layers `0..=min(l, layers - 1)`.
    pub fn pass(&mut self, settled: &[f32], top: &[f32], targets: &[usize]) -> Gradients {
        self.0.pass(settled, top, targets)
    }

    /// Rearranges the kept state for the next pass: its variant `v` (`run`
    /// consecutive sequences, one per integration step) continues variant
    /// `parents[v]` of the last pass. Each image's variants must stay its own.
    pub fn select(&mut self, parents: &[usize], run: usize) {
        self.0.select(parents, run)
    }
}

/// A [`Progression`] on one executor: the settled blocks' tapes and the branch
/// point live where it computes.
pub(super) struct Progressive<'a, E: Executor> {
    passes: Passes<'a, E>,
    cleans: Vec<&'a CleanTrace>,
    layer: usize,
    /// Sequences of the last pass.
    sequences: usize,
    settled: Vec<BlockTape<E::Tensor>>,
    branch_point: Option<BranchPoint<E::Tensor>>,
}

impl<'a, E: Executor> Progressive<'a, E> {
    pub(super) fn new(passes: Passes<'a, E>, cleans: &[&'a CleanTrace]) -> Self {
        Progressive {
            passes,
            cleans: cleans.to_vec(),
            layer: 0,
            sequences: 0,
            settled: Vec::new(),
            branch_point: None,
        }
    }
}

impl<E: Executor> Steps for Progressive<'_, E> {
    fn layer(&self) -> usize {
        self.layer
    }

    fn pass(&mut self, settled: &[f32], top: &[f32], targets: &[usize]) -> Gradients {
        let p = &self.passes;
        let (l, layers) = (self.layer, p.vit.config.layers);
        let x = match self.branch_point.take() {
            Some(bp) => {
                let mut x = bp.stream;
                let settled = p.e.upload(settled.to_vec());
                p.set_site_output(&mut x, l - 1, &bp.mid_rows, &settled);
                x
            }
            None => p.branch(&self.cleans, 0, if l == 0 { top } else { settled }),
        };
        let inner = (1..layers).contains(&l);
        let replace = [Intervention {
            site: p.vit.neuron_site(l),
            action: Action::Replace(top),
        }];
        let keep = Keep {
            tape: true,
            branch_point: inner.then_some(l),
            ..Keep::default()
        };
        let out = p.forward(x, l.max(1), if inner { &replace } else { &[] }, keep);
        let fresh = out.tape.expect("tape kept");
        let mut blocks = std::mem::take(&mut self.settled);
        blocks.extend(fresh.blocks);
        let tape = Tape {
            from: 1,
            blocks,
            readout: fresh.readout,
        };
        let sites: Vec<Site> = (1..=l.min(layers - 1))
            .map(|j| p.vit.neuron_site(j))
            .collect();
        let (mut grads, input) = p.backward(&tape, &out.logits, targets, &sites, true);
        let input = input.expect("input gradient");
        grads.insert(p.vit.neuron_site(0), p.branch_gradient(0, &input));
        self.sequences = targets.len();
        if l >= 1 {
            self.settled = tape.blocks;
            self.settled.truncate(l);
            self.branch_point = out.branch_point;
        }
        self.layer += 1;
        grads
    }

    fn select(&mut self, parents: &[usize], run: usize) {
        let unchanged = parents.len() * run == self.sequences
            && parents.iter().enumerate().all(|(v, &p)| v == p);
        if unchanged {
            return;
        }
        let order: Vec<usize> = parents
            .iter()
            .flat_map(|&p| p * run..(p + 1) * run)
            .collect();
        let (e, s) = (self.passes.e, self.sequences);
        let gather = |t: &E::Tensor| e.gather(t, s, &order);
        self.settled = std::mem::take(&mut self.settled)
            .into_iter()
            .map(|b| BlockTape {
                norm1: b.norm1.map(gather),
                qkv: gather(&b.qkv),
                probs: gather(&b.probs),
                norm2: b.norm2.map(gather),
                act_grad: gather(&b.act_grad),
                ..b
            })
            .collect();
        self.branch_point = self.branch_point.take().map(|bp| BranchPoint {
            stream: gather(&bp.stream),
            mid_rows: gather(&bp.mid_rows),
        });
        self.sequences = order.len();
    }
}
