//! Input-only backward pass over a [`Tape`]: the gradient of each sequence's
//! target-class softmax probability with respect to the values at given sites.
//!
//! No weight gradient is formed: each linear layer costs one GEMM backwards,
//! so the backward costs about as much as the forward.

use super::attention;
use super::kernels;
use super::rows::{add_rows_par, clip, select_rows};
use super::site::{Activation, Site};
use super::tape::{BlockTape, Tape};
use super::vit::Vit;
use crate::numeric::softmax;
use rayon::prelude::*;

/// Gradients of each sequence's target probability, keyed by site.
pub struct Gradients {
    /// `(site, [S * rows * width])` for every site asked for.
    by_site: Vec<(Site, Vec<f32>)>,
    /// Target-class probability of each sequence.
    pub probability: Vec<f32>,
}

impl Gradients {
    /// The gradient at `site`, `[S, rows, width]`; the site must have been asked for.
    pub fn at(&self, site: Site) -> &[f32] {
        self.by_site
            .iter()
            .find(|(s, _)| *s == site)
            .map(|(_, g)| g.as_slice())
            .unwrap_or_else(|| panic!("no gradient was asked for at {site}"))
    }

    pub(super) fn new(probability: Vec<f32>) -> Gradients {
        Gradients {
            by_site: Vec::new(),
            probability,
        }
    }

    pub(super) fn insert(&mut self, site: Site, values: Vec<f32>) {
        self.by_site.push((site, values));
    }
}

/// `d p_t / d logits = p_t (e_t - p)` of every sequence, and the probabilities `p_t`.
fn probability_gradient(logits: &[f32], targets: &[usize], classes: usize) -> (Vec<f32>, Vec<f32>) {
    let probs = softmax(logits, classes);
    let mut dlogits = vec![0f32; targets.len() * classes];
    let mut probability = Vec::with_capacity(targets.len());
    for (i, &target) in targets.iter().enumerate() {
        let p = &probs[i * classes..(i + 1) * classes];
        let pt = p[target];
        probability.push(pt);
        for (k, g) in dlogits[i * classes..(i + 1) * classes]
            .iter_mut()
            .enumerate()
        {
            *g = pt * (f32::from(k == target) - p[k]);
        }
    }
    (dlogits, probability)
}

impl Vit {
    /// Backpropagates `p[target[s]]` of every sequence `s` through the tape to
    /// `sites` (blocks the tape ran). Returns also the gradient of the stream
    /// entering block `tape.from` when `input_grad` is set.
    pub(super) fn backward(
        &self,
        tape: &Tape,
        logits: &[f32],
        targets: &[usize],
        sites: &[Site],
        input_grad: bool,
    ) -> (Gradients, Option<Vec<f32>>) {
        let (dlogits, probability) = probability_gradient(logits, targets, self.config.classes);
        let mut grads = Gradients::new(probability);
        let mut dx = self.readout_backward(tape, &dlogits, targets.len());
        let lowest_site = sites.iter().map(|s| s.block).min();
        for (bi, bt) in tape.blocks.iter().enumerate().rev() {
            let l = tape.from + bi;
            let done = !input_grad && lowest_site.is_none_or(|b| b >= l);
            self.block_backward(l, bt, &mut dx, targets.len(), sites, &mut grads, done);
            if done {
                break;
            }
        }
        (grads, input_grad.then_some(dx))
    }

    /// One block backwards: the gradients at its sites, then (unless `stop`) the
    /// stream gradient `dx` carried below the block.
    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        l: usize,
        bt: &BlockTape,
        dx: &mut [f32],
        s: usize,
        sites: &[Site],
        grads: &mut Gradients,
        stop: bool,
    ) {
        let c = &self.config;
        let (t, d, f) = (c.tokens(), c.hidden, c.intermediate);
        let block = &self.blocks[l];
        let q = bt.q_rows;
        // FFN: dg = dx W2 on the first q rows.
        let dxq = select_rows(dx, s, t, 0..q, d);
        let mut dg = vec![0f32; s * q * f];
        kernels::linear_backward(&mut dg, &dxq, s * q, &block.fc2.w, d);
        drop(dxq);
        for site in sites
            .iter()
            .filter(|site| site.block == l && site.activation == Activation::MlpPost)
        {
            grads.insert(*site, self.site_rows(&dg, s, q, *site, f));
        }
        let z_here = |site: &&Site| site.block == l && site.activation == Activation::AttnZ;
        if stop && !sites.iter().any(|s| z_here(&s)) {
            return;
        }
        if let Some(rows) = &bt.replaced {
            dg.chunks_exact_mut(q * f)
                .for_each(|seq| seq[rows.start * f..rows.end * f].fill(0.0));
        }
        let activation = c.family.activation;
        let du = activation.backward(dg, &bt.act_grad, f);
        let mut dh2 = vec![0f32; s * q * d];
        kernels::linear_backward(&mut dh2, &du, s * q, &block.fc1.w, activation.fc1_width(f));
        drop(du);
        add_rows_par(dx, s, t, 0..q, &dh2, &bt.xhat2, &bt.rstd2, &block.ln2.gamma);
        // Attention: d attn = dx W_o on the first q rows, then through the heads.
        let dxq = select_rows(dx, s, t, 0..q, d);
        let mut dattn = vec![0f32; s * q * d];
        kernels::linear_backward(&mut dattn, &dxq, s * q, &block.proj.w, d);
        drop(dxq);
        for site in sites.iter().filter(z_here) {
            grads.insert(*site, self.site_rows(&dattn, s, q, *site, d));
        }
        if stop {
            return;
        }
        if let Some(rows) = &bt.z_replaced {
            dattn
                .chunks_exact_mut(q * d)
                .for_each(|seq| seq[rows.start * d..rows.end * d].fill(0.0));
        }
        let mut dqkv = vec![0f32; s * t * 3 * d];
        dqkv.par_chunks_mut(t * 3 * d)
            .zip(bt.qkv.par_chunks(t * 3 * d))
            .zip(bt.probs.par_chunks(c.heads * q * t))
            .zip(dattn.par_chunks(q * d))
            .for_each_init(
                || vec![0f32; q * t],
                |scratch, (((dqkv, qkv), probs), dout)| {
                    attention::backward(c, qkv, probs, dout, t, q, dqkv, scratch)
                },
            );
        let mut dh1 = vec![0f32; s * t * d];
        kernels::linear_backward(&mut dh1, &dqkv, s * t, &block.qkv.w, 3 * d);
        drop(dqkv);
        add_rows_par(dx, s, t, 0..t, &dh1, &bt.xhat1, &bt.rstd1, &block.ln1.gamma);
    }

    /// The rows of `site` from a block's `[S, q, width]` post-activation gradient,
    /// `[S, rows, width]`; rows the block did not compute have none (zero).
    fn site_rows(&self, dg: &[f32], s: usize, q: usize, site: Site, f: usize) -> Vec<f32> {
        let rows = self.config.rows(site.tokens);
        let computed = clip(rows.clone(), q);
        if computed == rows {
            return select_rows(dg, s, q, rows, f).into_owned();
        }
        let mut out = vec![0f32; s * rows.len() * f];
        for (o, seq) in out
            .chunks_exact_mut(rows.len() * f)
            .zip(dg.chunks_exact(q * f))
        {
            o[..computed.len() * f].copy_from_slice(&seq[computed.start * f..computed.end * f]);
        }
        out
    }
}
