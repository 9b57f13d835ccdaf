//! Input-only backward pass over a [`Tape`]: the gradient of each sequence's
//! target-class probability (as the family defines it: a softmax, SigLIP's
//! sigmoid) with respect to the values at given sites.
//!
//! No weight gradient is formed: each linear layer costs one GEMM backwards,
//! so the backward costs about as much as the forward.

use super::engine::{clip, Passes};
use super::exec::{AttentionShape, Batch, Executor};
use super::site::{Activation, Site};
use super::tape::{BlockTape, Tape};
use super::vit::Linear;

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

/// Where a block's backward stops, and which of its sites' gradients it reports.
struct Stop<'s> {
    sites: &'s [Site],
    /// The stream gradient below the block is not needed.
    here: bool,
}

impl<E: Executor> Passes<'_, E> {
    /// Backpropagates `p[target[s]]` of every sequence `s` through the tape to
    /// `sites` (blocks the tape ran). Returns also the gradient of the stream
    /// entering block `tape.from` when `input_grad` is set.
    pub(super) fn backward(
        &self,
        tape: &Tape<E::Tensor>,
        logits: &[f32],
        targets: &[usize],
        sites: &[Site],
        input_grad: bool,
    ) -> (Gradients, Option<E::Tensor>) {
        let c = &self.vit.config;
        let (dlogits, probability) = c.family.probability.gradient(logits, targets, c.classes);
        let mut grads = Gradients::new(probability);
        let mut dx =
            self.readout_backward(&tape.readout, dlogits, targets.len(), sites, &mut grads);
        let lowest_site = sites.iter().map(|s| s.block).min();
        for (bi, bt) in tape.blocks.iter().enumerate().rev() {
            let l = tape.from + bi;
            let here = !input_grad && lowest_site.is_none_or(|b| b >= l);
            let stop = Stop { sites, here };
            self.block_backward(l, bt, &mut dx, targets.len(), stop, &mut grads);
            if here {
                break;
            }
        }
        (grads, input_grad.then_some(dx))
    }

    /// One block backwards: the gradients at its sites, then (unless it stops
    /// here) the stream gradient `dx` carried below the block.
    fn block_backward(
        &self,
        l: usize,
        bt: &BlockTape<E::Tensor>,
        dx: &mut E::Tensor,
        s: usize,
        stop: Stop,
        grads: &mut Gradients,
    ) {
        let c = &self.vit.config;
        let (d, f) = (c.hidden, c.intermediate);
        let b = Batch::new(s, c.tokens(), d);
        let block = &self.w.blocks[l];
        let q = bt.q_rows;
        let at = |activation| move |site: &&Site| site.block == l && site.activation == activation;
        // FFN: dg = dx W2 on the first q rows.
        let mut dg = self.back_through(dx, b, q, &block.fc2);
        for site in stop.sites.iter().filter(at(Activation::MlpPost)) {
            grads.insert(*site, self.site_rows(&dg, Batch::new(s, q, f), *site));
        }
        let z_here = stop.sites.iter().any(|s| at(Activation::AttnZ)(&s));
        if stop.here && !z_here {
            return;
        }
        if let Some(rows) = &bt.replaced {
            self.e.zero_rows(&mut dg, Batch::new(s, q, f), rows.clone());
        }
        let activation = c.family.activation;
        let du = self.e.activation_backward(dg, &bt.act_grad, activation, f);
        let dh2 = self
            .e
            .linear_backward(&du, s * q, &block.fc1.w, activation.fc1_width(f));
        drop(du);
        self.e
            .layer_norm_backward(dx, b, 0..q, &dh2, &bt.norm2, &block.ln2.gamma);
        // Attention: d attn = dx W_o on the first q rows, then through the heads.
        let mut dattn = self.back_through(dx, b, q, &block.proj);
        for site in stop.sites.iter().filter(at(Activation::AttnZ)) {
            grads.insert(*site, self.site_rows(&dattn, Batch::new(s, q, d), *site));
        }
        if stop.here {
            return;
        }
        if let Some(rows) = &bt.z_replaced {
            self.e
                .zero_rows(&mut dattn, Batch::new(s, q, d), rows.clone());
        }
        let shape = AttentionShape {
            seqs: s,
            tokens: b.rows,
            queries: q,
            heads: c.heads,
            head_dim: c.head_dim(),
        };
        let dqkv = self.e.attention_backward(&bt.qkv, &bt.probs, &dattn, shape);
        drop(dattn);
        let dh1 = self
            .e
            .linear_backward(&dqkv, s * b.rows, &block.qkv.w, 3 * d);
        drop(dqkv);
        self.e
            .layer_norm_backward(dx, b, 0..b.rows, &dh1, &bt.norm1, &block.ln1.gamma);
    }

    /// The gradient at the input of `layer` (whose output is `b.width` wide) from
    /// `dx`'s first `q` rows of every sequence.
    fn back_through(
        &self,
        dx: &E::Tensor,
        b: Batch,
        q: usize,
        layer: &Linear<E::Tensor>,
    ) -> E::Tensor {
        let packed = (q < b.rows).then(|| self.e.rows(dx, b, 0..q));
        let dxq = packed.as_ref().unwrap_or(dx);
        self.e.linear_backward(dxq, b.seqs * q, &layer.w, b.width)
    }

    /// The rows of `site` from a block's post-activation gradient (`b`: `[S, q,
    /// width]`), `[S, rows, width]`; rows the block did not compute have none (zero).
    fn site_rows(&self, g: &E::Tensor, b: Batch, site: Site) -> Vec<f32> {
        let rows = self.vit.config.rows(site.tokens);
        let computed = clip(rows.clone(), b.rows);
        let got = self.e.take_host(self.e.rows(g, b, computed.clone()));
        if computed == rows {
            return got;
        }
        let w = b.width;
        let mut out = vec![0f32; b.seqs * rows.len() * w];
        if !computed.is_empty() {
            for (o, seq) in out
                .chunks_exact_mut(rows.len() * w)
                .zip(got.chunks_exact(computed.len() * w))
            {
                o[..seq.len()].copy_from_slice(seq);
            }
        }
        out
    }
}
