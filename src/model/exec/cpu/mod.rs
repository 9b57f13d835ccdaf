//! The CPU executor: tensors are host vectors, the weights the model's own; the
//! GEMMs are `gemm`'s ([`kernels`]), the rest loops over rows, in parallel with
//! rayon where it pays.

mod attention;
pub mod kernels;
mod rows;

use super::{AttentionShape, Batch, Executor, NormStats, Write};
use crate::model::family::FfnActivation;
use crate::model::vit::{LayerNorm, Linear, Vit, Weights, ZeroShot};
use rayon::prelude::*;
use std::ops::Range;

/// The executor of the host's cores.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

/// Rows per parallel task of the element-wise steps.
const ROWS: usize = 16;

impl Executor for Cpu {
    type Tensor = Vec<f32>;

    fn weights<'a>(&'a self, vit: &'a Vit) -> &'a Weights {
        &vit.weights
    }

    fn upload(&self, values: Vec<f32>) -> Vec<f32> {
        values
    }

    fn download(&self, t: &Vec<f32>) -> Vec<f32> {
        t.clone()
    }

    fn take_host(&self, t: Vec<f32>) -> Vec<f32> {
        t
    }

    fn zeros(&self, len: usize) -> Vec<f32> {
        vec![0f32; len]
    }

    fn duplicate(&self, t: &Vec<f32>) -> Vec<f32> {
        t.clone()
    }

    fn rows(&self, x: &Vec<f32>, b: Batch, rows: Range<usize>) -> Vec<f32> {
        let w = b.width;
        let mut out = Vec::with_capacity(b.seqs * rows.len() * w);
        for seq in x.chunks_exact(b.rows * w) {
            out.extend_from_slice(&seq[rows.start * w..rows.end * w]);
        }
        out
    }

    fn write_rows(
        &self,
        dst: &mut Vec<f32>,
        b: Batch,
        rows: Range<usize>,
        src: &Vec<f32>,
        how: Write,
    ) {
        let w = b.width;
        let part = rows.len() * w;
        for (i, seq) in dst.chunks_exact_mut(b.rows * w).enumerate() {
            let from = match src.len() == part {
                true => &src[..],
                false => &src[i * part..(i + 1) * part],
            };
            let to = &mut seq[rows.start * w..rows.end * w];
            match how {
                Write::Set => to.copy_from_slice(from),
                Write::Add => kernels::add_assign(to, from),
            }
        }
    }

    fn zero_rows(&self, x: &mut Vec<f32>, b: Batch, rows: Range<usize>) {
        let w = b.width;
        for seq in x.chunks_exact_mut(b.rows * w) {
            seq[rows.start * w..rows.end * w].fill(0.0);
        }
    }

    fn gather(&self, x: &Vec<f32>, seqs: usize, order: &[usize]) -> Vec<f32> {
        let size = x.len() / seqs;
        order
            .iter()
            .flat_map(|&i| &x[i * size..(i + 1) * size])
            .copied()
            .collect()
    }

    fn linear(&self, x: &Vec<f32>, rows: usize, layer: &Linear) -> Vec<f32> {
        let mut y = vec![0f32; rows * layer.b.len()];
        kernels::linear(&mut y, x, rows, &layer.w, &layer.b);
        y
    }

    fn linear_backward(&self, dy: &Vec<f32>, rows: usize, w: &Vec<f32>, out: usize) -> Vec<f32> {
        let mut dx = vec![0f32; rows * (w.len() / out)];
        kernels::linear_backward(&mut dx, dy, rows, w, out);
        dx
    }

    fn layer_norm(
        &self,
        x: &Vec<f32>,
        norm: &LayerNorm,
        stats: bool,
    ) -> (Vec<f32>, Option<NormStats<Vec<f32>>>) {
        let mut y = vec![0f32; x.len()];
        if !stats {
            rows::par_layer_norm(x, norm, &mut y, None);
            return (y, None);
        }
        let mut xhat = vec![0f32; x.len()];
        let mut rstd = vec![0f32; x.len() / norm.gamma.len()];
        rows::par_layer_norm(x, norm, &mut y, Some((&mut xhat, &mut rstd)));
        (y, Some(NormStats { xhat, rstd }))
    }

    fn layer_norm_backward(
        &self,
        dx: &mut Vec<f32>,
        b: Batch,
        rows: Range<usize>,
        dy: &Vec<f32>,
        stats: &NormStats<Vec<f32>>,
        gamma: &Vec<f32>,
    ) {
        rows::add_rows_par(
            dx,
            (b.seqs, b.rows, rows),
            dy,
            (&stats.xhat, &stats.rstd),
            gamma,
        );
    }

    fn attention(&self, qkv: &Vec<f32>, a: AttentionShape) -> (Vec<f32>, Vec<f32>) {
        let (t, q, d) = (a.tokens, a.queries, a.heads * a.head_dim);
        let mut probs = vec![0f32; a.seqs * a.heads * q * t];
        let mut out = vec![0f32; a.seqs * q * d];
        qkv.par_chunks(t * 3 * d)
            .zip(probs.par_chunks_mut(a.heads * q * t))
            .zip(out.par_chunks_mut(q * d))
            .for_each(|((qkv, probs), out)| attention::forward(&a, qkv, probs, out));
        (probs, out)
    }

    fn attention_backward(
        &self,
        qkv: &Vec<f32>,
        probs: &Vec<f32>,
        dout: &Vec<f32>,
        a: AttentionShape,
    ) -> Vec<f32> {
        let (t, q, d) = (a.tokens, a.queries, a.heads * a.head_dim);
        let mut dqkv = vec![0f32; a.seqs * t * 3 * d];
        dqkv.par_chunks_mut(t * 3 * d)
            .zip(qkv.par_chunks(t * 3 * d))
            .zip(probs.par_chunks(a.heads * q * t))
            .zip(dout.par_chunks(q * d))
            .for_each_init(
                || vec![0f32; q * t],
                |scratch, (((dqkv, qkv), probs), dout)| {
                    attention::backward(&a, (qkv, probs, dout), dqkv, scratch)
                },
            );
        dqkv
    }

    fn activation(&self, u: &mut Vec<f32>, act: FfnActivation, f: usize, keep: bool) -> Vec<f32> {
        let w = act.fc1_width(f);
        let mut g = vec![0f32; u.len() / w * f];
        let chunks = g.par_chunks_mut(f * ROWS).zip(u.par_chunks_mut(w * ROWS));
        match (act, keep) {
            (FfnActivation::GeluErf, true) => {
                chunks.for_each(|(g, u)| kernels::gelu_keeping_derivative(u, g))
            }
            (FfnActivation::GeluErf, false) => chunks.for_each(|(g, u)| kernels::gelu(u, g)),
            (FfnActivation::QuickGelu, keep) => {
                chunks.for_each(|(g, u)| kernels::quick_gelu(u, g, keep))
            }
            (FfnActivation::GeluTanh, keep) => {
                chunks.for_each(|(g, u)| kernels::tanh_gelu(u, g, keep))
            }
            (FfnActivation::SwiGlu, keep) => {
                chunks.for_each(|(g, u)| kernels::swiglu(u, g, f, keep))
            }
        }
        g
    }

    fn activation_backward(
        &self,
        mut dg: Vec<f32>,
        kept: &Vec<f32>,
        act: FfnActivation,
        f: usize,
    ) -> Vec<f32> {
        if act != FfnActivation::SwiGlu {
            dg.par_chunks_mut(f * ROWS)
                .zip(kept.par_chunks(f * ROWS))
                .for_each(|(dg, kept)| kernels::mul_assign(dg, kept));
            return dg;
        }
        let mut du = vec![0f32; 2 * dg.len()];
        du.par_chunks_mut(2 * f)
            .zip(dg.par_chunks(f))
            .zip(kept.par_chunks(2 * f))
            .for_each(|((du, dg), kept)| {
                for (i, (du, k)) in du.iter_mut().zip(kept).enumerate() {
                    *du = dg[i % f] * k;
                }
            });
        du
    }

    fn scale_units(
        &self,
        x: &mut Vec<f32>,
        b: Batch,
        rows: Range<usize>,
        unit: usize,
        edits: &[Vec<(usize, f32)>],
    ) {
        let w = b.width;
        for (seq, edit) in x.chunks_exact_mut(b.rows * w).zip(edits) {
            for row in seq[rows.start * w..rows.end * w].chunks_exact_mut(w) {
                for &(n, factor) in edit {
                    row[n * unit..(n + 1) * unit]
                        .iter_mut()
                        .for_each(|v| *v *= factor);
                }
            }
        }
    }

    fn mean_rows(&self, x: &Vec<f32>, b: Batch, rows: Range<usize>) -> Vec<f32> {
        let (w, n) = (b.width, rows.len() as f32);
        let mut mean = vec![0f32; b.seqs * w];
        for (seq, m) in x.chunks_exact(b.rows * w).zip(mean.chunks_exact_mut(w)) {
            for row in seq[rows.start * w..rows.end * w].chunks_exact(w) {
                kernels::add_assign(m, row);
            }
            m.iter_mut().for_each(|v| *v /= n);
        }
        mean
    }

    fn spread_mean(&self, dx: &mut Vec<f32>, b: Batch, rows: Range<usize>, g: &Vec<f32>) {
        let (w, n) = (b.width, rows.len() as f32);
        for (seq, g) in dx.chunks_exact_mut(b.rows * w).zip(g.chunks_exact(w)) {
            for row in seq[rows.start * w..rows.end * w].chunks_exact_mut(w) {
                row.iter_mut().zip(g).for_each(|(r, g)| *r = g / n);
            }
        }
    }

    fn cosine_logits(&self, e: &Vec<f32>, seqs: usize, zs: &ZeroShot) -> Vec<f32> {
        let dim = e.len() / seqs;
        let classes = zs.text.len() / dim;
        let mut logits = vec![0f32; seqs * classes];
        for (e, l) in e.chunks_exact(dim).zip(logits.chunks_exact_mut(classes)) {
            let inv = 1.0 / e.iter().map(|v| v * v).sum::<f32>().sqrt();
            for (l, text) in l.iter_mut().zip(zs.text.chunks_exact(dim)) {
                *l = zs.scale * inv * e.iter().zip(text).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        logits
    }

    fn cosine_backward(
        &self,
        e: &Vec<f32>,
        dlogits: &Vec<f32>,
        seqs: usize,
        zs: &ZeroShot,
    ) -> Vec<f32> {
        let dim = e.len() / seqs;
        let classes = zs.text.len() / dim;
        let mut de = vec![0f32; seqs * dim];
        for ((de, e), dl) in de
            .chunks_exact_mut(dim)
            .zip(e.chunks_exact(dim))
            .zip(dlogits.chunks_exact(classes))
        {
            let inv = 1.0 / e.iter().map(|v| v * v).sum::<f32>().sqrt();
            // u = scale * sum_c dl_c text_c; de = (u - (u . e^) e^) / |e|
            let mut u = vec![0f32; dim];
            for (dl, text) in dl.iter().zip(zs.text.chunks_exact(dim)) {
                u.iter_mut()
                    .zip(text)
                    .for_each(|(u, t)| *u += zs.scale * dl * t);
            }
            let along = u.iter().zip(e).map(|(u, e)| u * e * inv).sum::<f32>();
            for ((de, u), e) in de.iter_mut().zip(&u).zip(e) {
                *de = (u - along * e * inv) * inv;
            }
        }
        de
    }
}
