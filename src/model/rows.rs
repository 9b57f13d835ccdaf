//! Row helpers of the passes: selecting token rows of batched sequences, and the
//! LayerNorm forward and backward over rows, in parallel.

use super::kernels::{self, LayerNormOut};
use super::vit::LayerNorm;
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

/// `rows` limited to the first `q` rows (those a block computes).
pub(super) fn clip(rows: Range<usize>, q: usize) -> Range<usize> {
    rows.start.min(q)..rows.end.min(q)
}

/// Rows `rows` of every `t`-row sequence, packed: `[S, rows, d]` (`x` itself when
/// that is all of it).
pub(super) fn select_rows(
    x: &[f32],
    s: usize,
    t: usize,
    rows: Range<usize>,
    d: usize,
) -> Cow<'_, [f32]> {
    if rows == (0..t) {
        return Cow::Borrowed(x);
    }
    let mut out = Vec::with_capacity(s * rows.len() * d);
    for seq in x.chunks_exact(t * d) {
        out.extend_from_slice(&seq[rows.start * d..rows.end * d]);
    }
    Cow::Owned(out)
}

const LN_ROWS_PER_TASK: usize = 32;

pub(super) fn par_layer_norm(
    x: &[f32],
    ln: &LayerNorm,
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

/// `dx[rows of each sequence] += LayerNorm backward of dh` (packed `[S, rows, d]`).
#[allow(clippy::too_many_arguments)]
pub(super) fn add_rows_par(
    dx: &mut [f32],
    s: usize,
    t: usize,
    rows: std::ops::Range<usize>,
    dh: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
) {
    let d = gamma.len();
    let q = rows.len();
    debug_assert_eq!(dh.len(), s * q * d);
    dx.par_chunks_mut(t * d).enumerate().for_each(|(i, dxs)| {
        let packed = i * q..(i + 1) * q;
        kernels::layer_norm_backward(
            &mut dxs[rows.start * d..rows.end * d],
            &dh[packed.start * d..packed.end * d],
            &xhat[packed.start * d..packed.end * d],
            &rstd[packed],
            gamma,
        );
    });
}
