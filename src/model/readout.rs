//! The readout: from the last block's output to the logits, forward and
//! backward, as the family says ([`Readout`]), then the head (linear, or CLIP's
//! zero-shot cosine with class text embeddings).

use super::family::{Compat, Readout};
use super::kernels;
use super::rows::{add_rows_par, par_layer_norm, select_rows};
use super::site::Tokens;
use super::tape::{ReadoutTape, Tape};
use super::vit::Vit;

impl Vit {
    /// The logits of the last block's output `x` (`[S, tokens, hidden]`, its first
    /// [`Readout::rows`] rows computed), and the readout's tape.
    pub(super) fn readout_forward(
        &self,
        x: &[f32],
        s: usize,
        tape: bool,
    ) -> (Vec<f32>, ReadoutTape) {
        let c = &self.config;
        let (t, d) = (c.tokens(), c.hidden);
        let readout = c.family.readout;
        let mut norms = Vec::new();
        let mut norm = |input: &[f32]| -> Vec<f32> {
            let rows = input.len() / d;
            let mut xhat = vec![0f32; if tape { rows * d } else { 0 }];
            let mut rstd = vec![0f32; if tape { rows } else { 0 }];
            let mut y = vec![0f32; rows * d];
            par_layer_norm(
                input,
                &self.norm,
                &mut y,
                tape.then_some((&mut xhat, &mut rstd)),
            );
            norms.push((xhat, rstd));
            y
        };
        let features = match readout {
            Readout::Cls | Readout::ClsAndDistillation => {
                norm(&select_rows(x, s, t, 0..readout.rows(t), d))
            }
            Readout::MeanPatches => {
                let mut pooled = self.patch_mean(x, s);
                // The paper's code applies fc_norm twice (QUIRKS.md).
                let twice = self.compat == Compat::Reference;
                for _ in 0..if twice { 2 } else { 1 } {
                    pooled = norm(&pooled);
                }
                pooled
            }
            Readout::ClsAndMeanPatches => {
                let normed = norm(&x[..s * t * d]);
                let mean = self.patch_mean(&normed, s);
                normed
                    .chunks_exact(t * d)
                    .zip(mean.chunks_exact(d))
                    .flat_map(|(seq, m)| seq[..d].iter().chain(m).copied())
                    .collect()
            }
        };
        let (logits, embedding) = self.head_forward(&features, s);
        (logits, ReadoutTape { norms, embedding })
    }

    /// The mean of the patch rows of every sequence, `[S, hidden]`.
    fn patch_mean(&self, x: &[f32], s: usize) -> Vec<f32> {
        let c = &self.config;
        let (t, d) = (c.tokens(), c.hidden);
        let patches = c.rows(Tokens::Patches);
        let n = patches.len() as f32;
        let mut pooled = vec![0f32; s * d];
        for (seq, p) in x.chunks_exact(t * d).zip(pooled.chunks_exact_mut(d)) {
            for row in seq[patches.start * d..patches.end * d].chunks_exact(d) {
                kernels::add_assign(p, row);
            }
            p.iter_mut().for_each(|v| *v /= n);
        }
        pooled
    }

    /// Logits of `[S, readout width]` features, and the projected embedding when
    /// the head is zero-shot (empty otherwise).
    fn head_forward(&self, features: &[f32], s: usize) -> (Vec<f32>, Vec<f32>) {
        let c = &self.config;
        let out = self.head.b.len();
        let mut y = vec![0f32; s * out];
        kernels::linear(&mut y, features, s, &self.head.w, &self.head.b);
        let Some(zs) = &self.zero_shot else {
            return (y, Vec::new());
        };
        let mut logits = vec![0f32; s * c.classes];
        for (e, l) in y.chunks_exact(out).zip(logits.chunks_exact_mut(c.classes)) {
            let inv = 1.0 / e.iter().map(|v| v * v).sum::<f32>().sqrt();
            for (l, text) in l.iter_mut().zip(zs.text.chunks_exact(out)) {
                *l = zs.scale * inv * e.iter().zip(text).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        (logits, y)
    }

    /// The gradient of the last block's output stream from that of the logits.
    pub(super) fn readout_backward(&self, tape: &Tape, dlogits: &[f32], s: usize) -> Vec<f32> {
        let c = &self.config;
        let (t, d) = (c.tokens(), c.hidden);
        let readout = c.family.readout;
        let tape = &tape.readout;
        let mut dfeatures = vec![0f32; s * readout.width(d)];
        let dhead = self.zero_shot_backward(tape, dlogits, s);
        kernels::linear_backward(&mut dfeatures, &dhead, s, &self.head.w, self.head.b.len());
        let mut dx = vec![0f32; s * t * d];
        let gamma = &self.norm.gamma;
        match readout {
            Readout::Cls | Readout::ClsAndDistillation => {
                let (xhat, rstd) = &tape.norms[0];
                add_rows_par(
                    &mut dx,
                    s,
                    t,
                    0..readout.rows(t),
                    &dfeatures,
                    xhat,
                    rstd,
                    gamma,
                );
            }
            Readout::MeanPatches => {
                for (xhat, rstd) in tape.norms.iter().rev() {
                    let mut dpooled = vec![0f32; s * d];
                    kernels::layer_norm_backward(&mut dpooled, &dfeatures, xhat, rstd, gamma);
                    dfeatures = dpooled;
                }
                self.spread_patch_mean(&mut dx, &dfeatures, s);
            }
            Readout::ClsAndMeanPatches => {
                let mut dnormed = vec![0f32; s * t * d];
                let (dcls, dmean): (Vec<f32>, Vec<f32>) = split_pairs(&dfeatures, d);
                self.spread_patch_mean(&mut dnormed, &dmean, s);
                for (seq, g) in dnormed.chunks_exact_mut(t * d).zip(dcls.chunks_exact(d)) {
                    seq[..d].copy_from_slice(g);
                }
                let (xhat, rstd) = &tape.norms[0];
                add_rows_par(&mut dx, s, t, 0..t, &dnormed, xhat, rstd, gamma);
            }
        }
        dx
    }

    /// `dx[patch rows] = g / patches` for every sequence: the patch mean backwards.
    fn spread_patch_mean(&self, dx: &mut [f32], g: &[f32], s: usize) {
        let c = &self.config;
        let (t, d) = (c.tokens(), c.hidden);
        let patches = c.rows(Tokens::Patches);
        let n = patches.len() as f32;
        for (seq, g) in dx.chunks_exact_mut(t * d).zip(g.chunks_exact(d)).take(s) {
            for row in seq[patches.start * d..patches.end * d].chunks_exact_mut(d) {
                row.iter_mut().zip(g).for_each(|(r, g)| *r = g / n);
            }
        }
    }

    /// The gradient at the head's output: `dlogits` itself for a linear head; for a
    /// zero-shot head, through `scale * <e / |e|, text[c]>` to the embedding `e`.
    fn zero_shot_backward(&self, tape: &ReadoutTape, dlogits: &[f32], s: usize) -> Vec<f32> {
        let Some(zs) = &self.zero_shot else {
            return dlogits.to_vec();
        };
        let (out, classes) = (self.head.b.len(), self.config.classes);
        let mut de = vec![0f32; s * out];
        for ((de, e), dl) in de
            .chunks_exact_mut(out)
            .zip(tape.embedding.chunks_exact(out))
            .zip(dlogits.chunks_exact(classes))
        {
            let inv = 1.0 / e.iter().map(|v| v * v).sum::<f32>().sqrt();
            // u = scale * sum_c dl_c text_c; de = (u - (u . e^) e^) / |e|
            let mut u = vec![0f32; out];
            for (dl, text) in dl.iter().zip(zs.text.chunks_exact(out)) {
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

/// `[S, 2d]` rows split into their two `[S, d]` halves.
fn split_pairs(x: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut first = Vec::with_capacity(x.len() / 2);
    let mut second = Vec::with_capacity(x.len() / 2);
    for row in x.chunks_exact(2 * d) {
        first.extend_from_slice(&row[..d]);
        second.extend_from_slice(&row[d..]);
    }
    (first, second)
}
