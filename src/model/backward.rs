//! Input-only backward pass over a [`Tape`]: the gradient of each sequence's
//! target-class softmax probability with respect to every block's CLS FFN row.
//!
//! No weight gradient is formed: each linear layer costs one GEMM backwards,
//! so the backward costs about as much as the forward.

use super::attention;
use super::forward::{first_rows, Tape};
use super::kernels;
use super::vit::Vit;
use rayon::prelude::*;

pub struct Gradients {
    /// d p_target / d (CLS FFN row) of every block run, `[blocks][S * intermediate]`;
    /// blocks are those from `tape.from` on.
    pub cls_ffn: Vec<Vec<f32>>,
    /// d p_target / d (residual stream entering block `tape.from`), `[S, tokens, hidden]`,
    /// when asked for.
    pub input: Option<Vec<f32>>,
    /// Target-class probability of each sequence.
    pub probability: Vec<f32>,
}

/// Softmax probabilities of `[S, classes]` logits.
pub fn softmax(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut p = logits.to_vec();
    kernels::softmax_rows(&mut p, classes);
    p
}

impl Vit {
    /// Backpropagates `p[target[s]]` of every sequence `s` through the tape. The stream
    /// gradient below the lowest block is formed only when `input_grad` is set.
    pub fn backward(
        &self,
        tape: &Tape,
        logits: &[f32],
        targets: &[usize],
        input_grad: bool,
    ) -> Gradients {
        let c = &self.config;
        let (t, d, f, classes) = (c.tokens(), c.hidden, c.intermediate, c.classes);
        let s = targets.len();
        // d p_t / d logits = p_t (e_t - p)
        let probs = softmax(logits, classes);
        let mut dlogits = vec![0f32; s * classes];
        let mut probability = Vec::with_capacity(s);
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
        let mut dy = vec![0f32; s * d];
        kernels::linear_backward(&mut dy, &dlogits, s, &self.head.w, classes);
        let mut dx = vec![0f32; s * t * d];
        add_rows_par(
            &mut dx,
            s,
            t,
            1,
            d,
            &dy,
            &tape.xhat_final,
            &tape.rstd_final,
            &self.norm.gamma,
        );
        let mut cls_grads = vec![Vec::new(); tape.blocks.len()];
        for (bi, bt) in tape.blocks.iter().enumerate().rev() {
            let l = tape.from + bi;
            let block = &self.blocks[l];
            let q = bt.q_rows;
            // FFN: dg = dx W2 on the first q rows; the CLS row of dg is this block's answer.
            let dxq = first_rows(&dx, s, t, q, d);
            let mut dg = vec![0f32; s * q * f];
            kernels::linear_backward(&mut dg, &dxq, s * q, &block.fc2.w, d);
            cls_grads[bi] = first_rows(&dg, s, q, 1, f).into_owned();
            let lowest = bi == 0;
            if lowest && !input_grad {
                break;
            }
            if tape.replaced[l] {
                dg.chunks_exact_mut(q * f)
                    .for_each(|seq| seq[..f].fill(0.0));
            }
            // d(fc1 output) = dg * GELU', in place.
            dg.par_chunks_mut(f * 16)
                .zip(bt.gelu_grad.par_chunks(f * 16))
                .for_each(|(dg, gelu_grad)| kernels::mul_assign(dg, gelu_grad));
            let mut dh2 = vec![0f32; s * q * d];
            kernels::linear_backward(&mut dh2, &dg, s * q, &block.fc1.w, f);
            drop(dg);
            add_rows_par(
                &mut dx,
                s,
                t,
                q,
                d,
                &dh2,
                &bt.xhat2,
                &bt.rstd2,
                &block.ln2.gamma,
            );
            // Attention: d attn = dx W_o on the first q rows, then through the heads.
            let dxq = first_rows(&dx, s, t, q, d);
            let mut dattn = vec![0f32; s * q * d];
            kernels::linear_backward(&mut dattn, &dxq, s * q, &block.proj.w, d);
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
            add_rows_par(
                &mut dx,
                s,
                t,
                t,
                d,
                &dh1,
                &bt.xhat1,
                &bt.rstd1,
                &block.ln1.gamma,
            );
        }
        Gradients {
            cls_ffn: cls_grads,
            input: input_grad.then_some(dx),
            probability,
        }
    }
}

/// `dx[first q rows of each sequence] += LayerNorm backward of dh` (packed `[S, q, d]`).
#[allow(clippy::too_many_arguments)]
fn add_rows_par(
    dx: &mut [f32],
    s: usize,
    t: usize,
    q: usize,
    d: usize,
    dh: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
) {
    debug_assert_eq!(dh.len(), s * q * d);
    dx.par_chunks_mut(t * d).enumerate().for_each(|(i, dxs)| {
        let rows = i * q..(i + 1) * q;
        kernels::layer_norm_backward(
            &mut dxs[..q * d],
            &dh[rows.start * d..rows.end * d],
            &xhat[rows.start * d..rows.end * d],
            &rstd[rows],
            gamma,
        );
    });
}
