//! The batched forward pass with interventions at sites, and its tape.
//!
//! A batch is `S` sequences of one or several images, `[S, tokens, hidden]`,
//! entering block `from`. At every block the FFN post-activation at a site's rows
//! can be replaced or scaled ([`Intervention`]). The last block computes only the
//! rows the readout reads (the CLS row for a CLS readout). The tape is the
//! model's own: the backward pass and branching read it, nothing else does.

use super::attention;
use super::kernels;
use super::rows::{clip, par_layer_norm, select_rows};
use super::site::{Action, Activation, Intervention};
use super::tape::{BlockTape, Tape};
use super::vit::{Block, Linear, Vit};
use rayon::prelude::*;
use std::ops::Range;

/// What a forward pass keeps.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Keep {
    /// Everything the input-gradient backward needs.
    pub tape: bool,
    /// The residual stream entering every block and after its attention, and the
    /// neuron values (a clean trace).
    pub residuals: bool,
    /// Just what branching at this block needs: see [`BranchPoint`].
    pub branch_point: Option<usize>,
    /// The neuron values and the last block's output (a scan).
    pub neurons: bool,
}

impl Keep {
    /// The tape only: what a pass followed by a backward needs.
    pub const TAPE: Keep = Keep {
        tape: true,
        residuals: false,
        branch_point: None,
        neurons: false,
    };
}

/// What a later pass needs to run on from block `layer + 1` with block `layer`'s
/// neuron rows changed: the rest of the block does not depend on them.
pub(super) struct BranchPoint {
    /// The stream leaving block `layer`, `[S, tokens, hidden]`.
    pub stream: Vec<f32>,
    /// The neuron rows after block `layer`'s attention, `[S, rows, hidden]`.
    pub mid_rows: Vec<f32>,
}

pub(super) struct ForwardOut {
    /// `[S, classes]`
    pub logits: Vec<f32>,
    /// With [`Keep::residuals`] or [`Keep::neurons`]: the neuron site's values of
    /// each block run, after its action: `[blocks][S * rows * intermediate]`.
    pub neurons: Vec<Vec<f32>>,
    /// With [`Keep::residuals`]: the stream entering each block run and the output (`[blocks + 1]`).
    pub residual: Vec<Vec<f32>>,
    /// With [`Keep::residuals`]: the stream after each block's attention.
    pub mid: Vec<Vec<f32>>,
    /// With [`Keep::neurons`] (and not residuals): the last block's output.
    pub output: Vec<f32>,
    pub branch_point: Option<BranchPoint>,
    pub tape: Option<Tape>,
}

/// The intervention at block `l`'s `activation`, if any (at most one).
fn intervention_at<'a>(
    interventions: &[Intervention<'a>],
    l: usize,
    activation: Activation,
) -> Option<Intervention<'a>> {
    let mut at = interventions
        .iter()
        .filter(|i| i.site.block == l && i.site.activation == activation);
    let found = at.next().copied();
    assert!(at.next().is_none(), "one intervention per site");
    found
}

impl Vit {
    /// Runs blocks `from..layers` on `x = [S, tokens, hidden]` with `interventions`.
    pub(super) fn forward(
        &self,
        mut x: Vec<f32>,
        from: usize,
        interventions: &[Intervention],
        keep: Keep,
    ) -> ForwardOut {
        let c = &self.config;
        let (t, d) = (c.tokens(), c.hidden);
        let s = x.len() / (t * d);
        assert_eq!(
            x.len(),
            s * t * d,
            "batch is not a whole number of sequences"
        );
        let mut out = ForwardOut {
            logits: Vec::new(),
            neurons: Vec::new(),
            residual: Vec::new(),
            mid: Vec::new(),
            output: Vec::new(),
            branch_point: None,
            tape: None,
        };
        let mut blocks = Vec::new();
        for l in from..c.layers {
            let q = if l + 1 == c.layers {
                self.readout_rows()
            } else {
                t
            };
            if keep.residuals {
                out.residual.push(x.clone());
            }
            let block = &self.blocks[l];
            let z_at = intervention_at(interventions, l, Activation::AttnZ);
            let attn = self.attention_forward(block, &mut x, s, q, z_at, keep);
            if keep.residuals {
                out.mid.push(x.clone());
            }
            let site_rows = self.config.rows(self.neuron_tokens);
            let mid_rows = (keep.branch_point == Some(l))
                .then(|| select_rows(&x, s, t, site_rows.clone(), d).into_owned());
            let post_at = intervention_at(interventions, l, Activation::MlpPost);
            let ffn = self.ffn_forward(block, &mut x, s, q, post_at, keep);
            if keep.residuals || keep.neurons {
                out.neurons.push(match self.unit {
                    Activation::MlpPost => ffn.neurons,
                    Activation::AttnZ => attn.z,
                });
            }
            if let Some(mid_rows) = mid_rows {
                out.branch_point = Some(BranchPoint {
                    stream: x.clone(),
                    mid_rows,
                });
            }
            if keep.tape {
                blocks.push(BlockTape {
                    q_rows: q,
                    xhat1: attn.xhat1,
                    rstd1: attn.rstd1,
                    qkv: attn.qkv,
                    probs: attn.probs,
                    z_replaced: attn.replaced,
                    xhat2: ffn.xhat2,
                    rstd2: ffn.rstd2,
                    act_grad: ffn.act_grad,
                    replaced: ffn.replaced,
                });
            }
        }
        let (logits, readout) = self.readout_forward(&x, s, keep.tape);
        out.logits = logits;
        if keep.residuals {
            out.residual.push(x);
        } else if keep.neurons {
            out.output = x;
        }
        if keep.tape {
            out.tape = Some(Tape {
                from,
                blocks,
                readout,
            });
        }
        out
    }

    /// `x += proj(attn(LN1(x)))` on the first `q` rows of each sequence, with the
    /// intervention at the heads' output (`attn.z`) applied.
    fn attention_forward(
        &self,
        block: &Block,
        x: &mut [f32],
        s: usize,
        q: usize,
        intervention: Option<Intervention>,
        keep: Keep,
    ) -> AttnOut {
        let tape = keep.tape;
        let c = &self.config;
        let (t, d) = (c.tokens(), c.hidden);
        let mut xhat1 = vec![0f32; if tape { s * t * d } else { 0 }];
        let mut rstd1 = vec![0f32; if tape { s * t } else { 0 }];
        let mut h = vec![0f32; s * t * d];
        par_layer_norm(
            x,
            &block.ln1,
            &mut h,
            tape.then_some((&mut xhat1, &mut rstd1)),
        );
        let mut qkv = vec![0f32; s * t * 3 * d];
        kernels::linear(&mut qkv, &h, s * t, &block.qkv.w, &block.qkv.b);
        let mut probs = vec![0f32; s * c.heads * q * t];
        let mut attn = vec![0f32; s * q * d];
        qkv.par_chunks(t * 3 * d)
            .zip(probs.par_chunks_mut(c.heads * q * t))
            .zip(attn.par_chunks_mut(q * d))
            .for_each(|((qkv, probs), attn)| attention::forward(c, qkv, t, q, probs, attn));
        let site = (Activation::AttnZ, c.head_dim());
        let (replaced, z) =
            self.site_to_residual(&mut attn, x, (s, q), site, intervention, keep, &block.proj);
        AttnOut {
            xhat1,
            rstd1,
            qkv,
            probs,
            z,
            replaced,
        }
    }

    /// `x += fc2(act(fc1(LN2(x))))` on the first `q` rows of each sequence, with the
    /// intervention at the post-activation applied.
    fn ffn_forward(
        &self,
        block: &Block,
        x: &mut [f32],
        s: usize,
        q: usize,
        intervention: Option<Intervention>,
        keep: Keep,
    ) -> FfnOut {
        let c = &self.config;
        let (t, d, f) = (c.tokens(), c.hidden, c.intermediate);
        let xq = select_rows(x, s, t, 0..q, d);
        let mut xhat2 = vec![0f32; if keep.tape { s * q * d } else { 0 }];
        let mut rstd2 = vec![0f32; if keep.tape { s * q } else { 0 }];
        let mut h2 = vec![0f32; s * q * d];
        par_layer_norm(
            &xq,
            &block.ln2,
            &mut h2,
            keep.tape.then_some((&mut xhat2, &mut rstd2)),
        );
        drop(xq);
        let activation = c.family.activation;
        let mut u = vec![0f32; s * q * activation.fc1_width(f)];
        kernels::linear(&mut u, &h2, s * q, &block.fc1.w, &block.fc1.b);
        let mut g = vec![0f32; s * q * f];
        activation.forward(&mut u, &mut g, f, keep.tape);
        let site = (Activation::MlpPost, 1);
        let (replaced, neurons) =
            self.site_to_residual(&mut g, x, (s, q), site, intervention, keep, &block.fc2);
        FfnOut {
            xhat2,
            rstd2,
            act_grad: u,
            neurons,
            replaced,
        }
    }

    /// A site's values `v` (`[S, q, width]`, units of `unit` values each) on their
    /// way to the residual stream: the intervention applied, the model's unit rows
    /// kept for a clean trace, then `x += out(v)` on the first `q` rows of each
    /// sequence. Returns the replaced rows and the kept values.
    #[allow(clippy::too_many_arguments)]
    fn site_to_residual(
        &self,
        v: &mut [f32],
        x: &mut [f32],
        (s, q): (usize, usize),
        (activation, unit): (Activation, usize),
        intervention: Option<Intervention>,
        keep: Keep,
        out: &Linear,
    ) -> (Option<Range<usize>>, Vec<f32>) {
        let c = &self.config;
        let (t, d) = (c.tokens(), c.hidden);
        let width = v.len() / (s * q);
        let replaced = intervention.and_then(|i| self.apply(i, v, s, q, (width, unit)));
        let kept = if (keep.residuals || keep.neurons) && self.unit == activation {
            select_rows(v, s, q, clip(c.rows(self.neuron_tokens), q), width).into_owned()
        } else {
            Vec::new()
        };
        let mut y = vec![0f32; s * q * d];
        kernels::linear(&mut y, v, s * q, &out.w, &out.b);
        for (xs, ys) in x.chunks_exact_mut(t * d).zip(y.chunks_exact(q * d)) {
            kernels::add_assign(&mut xs[..q * d], ys);
        }
        (replaced, kept)
    }

    /// Applies `intervention` to a site's values `g` (`[S, q, width]`, a unit being
    /// `unit` consecutive values: `(width, unit)`); returns the rows it replaced.
    fn apply(
        &self,
        intervention: Intervention,
        g: &mut [f32],
        s: usize,
        q: usize,
        (f, unit): (usize, usize),
    ) -> Option<Range<usize>> {
        let site = self.config.rows(intervention.site.tokens);
        let rows = clip(site.clone(), q);
        match intervention.action {
            Action::Replace(values) => {
                let per_seq = site.len() * f;
                assert_eq!(
                    values.len(),
                    s * per_seq,
                    "replacement must be [S, rows, width]"
                );
                for (seq, v) in g.chunks_exact_mut(q * f).zip(values.chunks_exact(per_seq)) {
                    let skip = (rows.start - site.start) * f;
                    seq[rows.start * f..rows.end * f]
                        .copy_from_slice(&v[skip..skip + rows.len() * f]);
                }
                Some(rows)
            }
            Action::Scale(edits) => {
                assert_eq!(edits.len(), s, "one edit list per sequence");
                for (seq, edit) in g.chunks_exact_mut(q * f).zip(edits) {
                    for row in seq[rows.start * f..rows.end * f].chunks_exact_mut(f) {
                        for &(n, factor) in edit {
                            row[n * unit..(n + 1) * unit]
                                .iter_mut()
                                .for_each(|v| *v *= factor);
                        }
                    }
                }
                None
            }
        }
    }
}

struct AttnOut {
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    qkv: Vec<f32>,
    probs: Vec<f32>,
    /// With [`Keep::residuals`] and heads as the unit: the values at the unit's rows.
    z: Vec<f32>,
    replaced: Option<Range<usize>>,
}

struct FfnOut {
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
    act_grad: Vec<f32>,
    neurons: Vec<f32>,
    replaced: Option<Range<usize>>,
}
