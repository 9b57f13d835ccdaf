//! Multi-head self-attention of one sequence, forward and input-gradient.
//!
//! `qkv` is `[t, 3 * hidden]` (Q | K | V, heads contiguous inside each). Only the
//! first `q_rows` query rows are computed: the last block needs just the CLS row.

use super::kernels::{matmul, MatRef};
use crate::model::exec::AttentionShape;
use crate::numeric::softmax_rows;
use gemm::Parallelism::None as Serial;

/// `out[q_rows, hidden]` = attention output; `probs[heads, q_rows, t]` = softmax weights.
pub fn forward(a: &AttentionShape, qkv: &[f32], probs: &mut [f32], out: &mut [f32]) {
    let (t, q_rows, dh) = (a.tokens, a.queries, a.head_dim);
    let d = a.heads * dh;
    let scale = 1.0 / (dh as f32).sqrt();
    for h in 0..a.heads {
        let p = &mut probs[h * q_rows * t..(h + 1) * q_rows * t];
        let q = MatRef::strided(&qkv[h * dh..], q_rows, dh, 3 * d, 1);
        let k = MatRef::strided(&qkv[d + h * dh..], t, dh, 3 * d, 1);
        let v = MatRef::strided(&qkv[2 * d + h * dh..], t, dh, 3 * d, 1);
        matmul(p, t, q, k.t(), false, Serial);
        p.iter_mut().for_each(|s| *s *= scale);
        softmax_rows(p, t);
        matmul(
            &mut out[h * dh..],
            d,
            MatRef::new(p, q_rows, t),
            v,
            false,
            Serial,
        );
    }
}

/// `dqkv[t, 3 * hidden]` from `dout[q_rows, hidden]`; `scratch` holds `q_rows * t`.
pub fn backward(
    a: &AttentionShape,
    (qkv, probs, dout): (&[f32], &[f32], &[f32]),
    dqkv: &mut [f32],
    scratch: &mut [f32],
) {
    let (t, q_rows, dh) = (a.tokens, a.queries, a.head_dim);
    let d = a.heads * dh;
    let scale = 1.0 / (dh as f32).sqrt();
    // dK and dV are written for all t rows and dQ for the first q_rows: the rest of
    // dQ is zero (those queries were not computed).
    for row in dqkv.chunks_exact_mut(3 * d).skip(q_rows) {
        row[..d].fill(0.0);
    }
    for h in 0..a.heads {
        let p = &probs[h * q_rows * t..(h + 1) * q_rows * t];
        let q = MatRef::strided(&qkv[h * dh..], q_rows, dh, 3 * d, 1);
        let k = MatRef::strided(&qkv[d + h * dh..], t, dh, 3 * d, 1);
        let v = MatRef::strided(&qkv[2 * d + h * dh..], t, dh, 3 * d, 1);
        let dout_h = MatRef::strided(&dout[h * dh..], q_rows, dh, d, 1);
        // dV = P^T dO
        matmul(
            &mut dqkv[2 * d + h * dh..],
            3 * d,
            MatRef::new(p, q_rows, t).t(),
            dout_h,
            false,
            Serial,
        );
        // dP = dO V^T, then dS = P * (dP - rowsum(dP * P)) * scale
        let ds = &mut scratch[..q_rows * t];
        matmul(ds, t, dout_h, v.t(), false, Serial);
        for (ds_row, p_row) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)) {
            let dot: f32 = ds_row.iter().zip(p_row).map(|(a, b)| a * b).sum();
            for (g, &pv) in ds_row.iter_mut().zip(p_row) {
                *g = pv * (*g - dot) * scale;
            }
        }
        let ds = MatRef::new(ds, q_rows, t);
        // dQ = dS K, dK = dS^T Q
        matmul(&mut dqkv[h * dh..], 3 * d, ds, k, false, Serial);
        matmul(&mut dqkv[d + h * dh..], 3 * d, ds.t(), q, false, Serial);
    }
}
