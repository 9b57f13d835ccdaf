//! The batched forward pass with interventions on CLS FFN rows, and its tape.
//!
//! A batch is `S` sequences of one or several images, `[S, tokens, hidden]`,
//! entering block `from`. At every block the post-GELU FFN activation at the CLS
//! token (the *neuron row*) can be replaced or edited ([`RowAction`]). The last
//! block computes only the CLS row: nothing downstream reads the others.

use super::attention;
use super::kernels::{self, LayerNormOut};
use super::vit::Vit;
use rayon::prelude::*;
use std::borrow::Cow;

/// What happens to one block's CLS FFN row (post-GELU, `intermediate` wide).
#[derive(Clone, Copy, Debug, Default)]
pub enum RowAction<'a> {
    #[default]
    Keep,
    /// Overwritten by given values, `[S, intermediate]`: upstream changes do not
    /// reach it and no gradient flows through it (the reference's `tmp_score`).
    Replace(&'a [f32]),
    /// `row[n] *= factor` for each `(n, factor)`, per sequence: `[S][..]`.
    Edit(&'a [Vec<(usize, f32)>]),
}

/// What a forward pass keeps.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keep {
    /// Everything the input-gradient backward needs.
    pub tape: bool,
    /// The residual stream entering every block and after its attention (for branching).
    pub residuals: bool,
    /// Just what branching at this block needs: see [`BranchPoint`].
    pub branch_point: Option<usize>,
}

impl Keep {
    /// The tape only: what a pass followed by a backward needs.
    pub const TAPE: Keep = Keep {
        tape: true,
        residuals: false,
        branch_point: None,
    };
}

/// What a later pass needs to run on from block `layer + 1` with block `layer`'s
/// CLS FFN row changed: the rest of the block does not depend on that row.
pub struct BranchPoint {
    pub layer: usize,
    /// The stream leaving block `layer`, `[S, tokens, hidden]`.
    pub stream: Vec<f32>,
    /// The CLS row after block `layer`'s attention, `[S, hidden]`.
    pub mid_cls: Vec<f32>,
}

/// Activations of one block kept for the backward pass.
pub struct BlockTape {
    pub q_rows: usize,
    pub xhat1: Vec<f32>,
    pub rstd1: Vec<f32>,
    pub qkv: Vec<f32>,
    pub probs: Vec<f32>,
    pub xhat2: Vec<f32>,
    pub rstd2: Vec<f32>,
    /// GELU'(fc1 output): what the FFN's backward multiplies by.
    pub gelu_grad: Vec<f32>,
}

pub struct Tape {
    pub from: usize,
    pub blocks: Vec<BlockTape>,
    pub xhat_final: Vec<f32>,
    pub rstd_final: Vec<f32>,
    /// Whether each block's CLS row was replaced (gradient stops there).
    pub replaced: Vec<bool>,
}

pub struct ForwardOut {
    pub sequences: usize,
    /// `[S, classes]`
    pub logits: Vec<f32>,
    /// CLS FFN row of each block run, after its action: `[blocks][S * intermediate]`.
    pub cls_ffn: Vec<Vec<f32>>,
    /// With [`Keep::residuals`]: the stream entering each block run and the output (`[blocks + 1]`).
    pub residual: Vec<Vec<f32>>,
    /// With [`Keep::residuals`]: the stream after each block's attention.
    pub mid: Vec<Vec<f32>>,
    pub branch_point: Option<BranchPoint>,
    pub tape: Option<Tape>,
}

impl Vit {
    /// Runs blocks `from..layers` on `x = [S, tokens, hidden]`; `actions[l]` for every layer.
    pub fn forward(
        &self,
        mut x: Vec<f32>,
        from: usize,
        actions: &[RowAction],
        keep: Keep,
    ) -> ForwardOut {
        let c = &self.config;
        let (t, d, f) = (c.tokens(), c.hidden, c.intermediate);
        let s = x.len() / (t * d);
        assert_eq!(
            x.len(),
            s * t * d,
            "batch is not a whole number of sequences"
        );
        assert_eq!(actions.len(), c.layers, "one row action per layer");
        let mut out = ForwardOut {
            sequences: s,
            logits: Vec::new(),
            cls_ffn: Vec::new(),
            residual: Vec::new(),
            mid: Vec::new(),
            branch_point: None,
            tape: None,
        };
        let mut blocks = Vec::new();
        for (l, (block, &action)) in self.blocks.iter().zip(actions).enumerate().skip(from) {
            let q = if l + 1 == c.layers { 1 } else { t };
            if keep.residuals {
                out.residual.push(x.clone());
            }
            // Attention: x += proj(attn(LN1(x)))
            let mut xhat1 = vec![0f32; if keep.tape { s * t * d } else { 0 }];
            let mut rstd1 = vec![0f32; if keep.tape { s * t } else { 0 }];
            let mut h = vec![0f32; s * t * d];
            par_layer_norm(
                &x,
                &block.ln1,
                &mut h,
                keep.tape.then_some((&mut xhat1, &mut rstd1)),
            );
            let mut qkv = vec![0f32; s * t * 3 * d];
            kernels::linear(&mut qkv, &h, s * t, &block.qkv.w, &block.qkv.b);
            let mut probs = vec![0f32; s * c.heads * q * t];
            let mut attn = vec![0f32; s * q * d];
            qkv.par_chunks(t * 3 * d)
                .zip(probs.par_chunks_mut(c.heads * q * t))
                .zip(attn.par_chunks_mut(q * d))
                .for_each(|((qkv, probs), attn)| attention::forward(c, qkv, t, q, probs, attn));
            let mut proj = vec![0f32; s * q * d];
            kernels::linear(&mut proj, &attn, s * q, &block.proj.w, &block.proj.b);
            for (xs, ps) in x.chunks_exact_mut(t * d).zip(proj.chunks_exact(q * d)) {
                kernels::add_assign(&mut xs[..q * d], ps);
            }
            if keep.residuals {
                out.mid.push(x.clone());
            }
            let mid_cls =
                (keep.branch_point == Some(l)).then(|| first_rows(&x, s, t, 1, d).into_owned());
            // FFN on the first q rows of each sequence: x += fc2(GELU(fc1(LN2(x))))
            let xq = first_rows(&x, s, t, q, d);
            let mut xhat2 = vec![0f32; if keep.tape { s * q * d } else { 0 }];
            let mut rstd2 = vec![0f32; if keep.tape { s * q } else { 0 }];
            let mut h2 = vec![0f32; s * q * d];
            par_layer_norm(
                &xq,
                &block.ln2,
                &mut h2,
                keep.tape.then_some((&mut xhat2, &mut rstd2)),
            );
            let mut u = vec![0f32; s * q * f];
            kernels::linear(&mut u, &h2, s * q, &block.fc1.w, &block.fc1.b);
            let mut g = vec![0f32; s * q * f];
            if keep.tape {
                g.par_chunks_mut(f * 16)
                    .zip(u.par_chunks_mut(f * 16))
                    .for_each(|(g, u)| kernels::gelu_keeping_derivative(u, g));
            } else {
                g.par_chunks_mut(f * 16)
                    .zip(u.par_chunks(f * 16))
                    .for_each(|(g, u)| kernels::gelu(u, g));
            }
            apply_action(action, &mut g, s, q * f, f);
            out.cls_ffn.push(first_rows(&g, s, q, 1, f).into_owned());
            let mut y = vec![0f32; s * q * d];
            kernels::linear(&mut y, &g, s * q, &block.fc2.w, &block.fc2.b);
            for (xs, ys) in x.chunks_exact_mut(t * d).zip(y.chunks_exact(q * d)) {
                kernels::add_assign(&mut xs[..q * d], ys);
            }
            if let Some(mid_cls) = mid_cls {
                out.branch_point = Some(BranchPoint {
                    layer: l,
                    stream: x.clone(),
                    mid_cls,
                });
            }
            if keep.tape {
                blocks.push(BlockTape {
                    q_rows: q,
                    xhat1,
                    rstd1,
                    qkv,
                    probs,
                    xhat2,
                    rstd2,
                    gelu_grad: u,
                });
            }
        }
        // Head on the CLS row of each sequence.
        let cls = first_rows(&x, s, t, 1, d);
        let mut xhat_final = vec![0f32; if keep.tape { s * d } else { 0 }];
        let mut rstd_final = vec![0f32; if keep.tape { s } else { 0 }];
        let mut y = vec![0f32; s * d];
        par_layer_norm(
            &cls,
            &self.norm,
            &mut y,
            keep.tape.then_some((&mut xhat_final, &mut rstd_final)),
        );
        out.logits = vec![0f32; s * c.classes];
        kernels::linear(&mut out.logits, &y, s, &self.head.w, &self.head.b);
        if keep.residuals {
            out.residual.push(x);
        }
        if keep.tape {
            let replaced = actions
                .iter()
                .map(|a| matches!(a, RowAction::Replace(_)))
                .collect();
            out.tape = Some(Tape {
                from,
                blocks,
                xhat_final,
                rstd_final,
                replaced,
            });
        }
        out
    }
}

fn apply_action(action: RowAction, g: &mut [f32], s: usize, seq_len: usize, f: usize) {
    match action {
        RowAction::Keep => {}
        RowAction::Replace(values) => {
            assert_eq!(
                values.len(),
                s * f,
                "replacement rows must be [sequences, intermediate]"
            );
            for (seq, row) in g.chunks_exact_mut(seq_len).zip(values.chunks_exact(f)) {
                seq[..f].copy_from_slice(row);
            }
        }
        RowAction::Edit(edits) => {
            assert_eq!(edits.len(), s, "one edit list per sequence");
            for (seq, edit) in g.chunks_exact_mut(seq_len).zip(edits) {
                for &(n, factor) in edit {
                    seq[n] *= factor;
                }
            }
        }
    }
}

/// The first `q` rows of every `t`-row sequence, packed: `[S, q, d]` (`x` itself
/// when that is all of it).
pub(crate) fn first_rows(x: &[f32], s: usize, t: usize, q: usize, d: usize) -> Cow<'_, [f32]> {
    if q == t {
        return Cow::Borrowed(x);
    }
    let mut out = Vec::with_capacity(s * q * d);
    for seq in x.chunks_exact(t * d) {
        out.extend_from_slice(&seq[..q * d]);
    }
    Cow::Owned(out)
}

const LN_ROWS_PER_TASK: usize = 32;

fn par_layer_norm(
    x: &[f32],
    ln: &super::vit::LayerNorm,
    y: &mut [f32],
    stats: Option<(&mut Vec<f32>, &mut Vec<f32>)>,
) {
    let d = ln.gamma.len();
    let chunk = LN_ROWS_PER_TASK * d;
    match stats {
        None => y
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(y, x)| {
                kernels::layer_norm(
                    x,
                    &ln.gamma,
                    &ln.beta,
                    ln.eps,
                    LayerNormOut {
                        y,
                        xhat: None,
                        rstd: None,
                    },
                )
            }),
        Some((xhat, rstd)) => y
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .zip(xhat.par_chunks_mut(chunk))
            .zip(rstd.par_chunks_mut(LN_ROWS_PER_TASK))
            .for_each(|(((y, x), xhat), rstd)| {
                kernels::layer_norm(
                    x,
                    &ln.gamma,
                    &ln.beta,
                    ln.eps,
                    LayerNormOut {
                        y,
                        xhat: Some(xhat),
                        rstd: Some(rstd),
                    },
                )
            }),
    }
}
