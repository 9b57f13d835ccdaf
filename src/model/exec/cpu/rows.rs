//! The LayerNorm forward and backward over the rows of batched sequences, in
//! parallel.

use super::kernels::{self, LayerNormOut};
use crate::model::vit::LayerNorm;
use rayon::prelude::*;
use std::ops::Range;

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

/// `dx[rows of each sequence] += LayerNorm backward of dh` (packed `[S, rows, d]`),
/// for `dx` of `s` sequences of `t` rows.
pub(super) fn add_rows_par(
    dx: &mut [f32],
    (s, t, rows): (usize, usize, Range<usize>),
    dh: &[f32],
    (xhat, rstd): (&[f32], &[f32]),
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
