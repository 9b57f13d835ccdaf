//! The readout: from the last block's output to the logits, forward and
//! backward, as the family says ([`Readout`]), then the head (linear, or CLIP's
//! zero-shot cosine with class text embeddings).

use super::engine::Passes;
use super::exec::{Batch, Executor, Tensor, Write};
use super::family::{Compat, Readout};
use super::site::Tokens;
use super::tape::ReadoutTape;

impl<E: Executor> Passes<'_, E> {
    /// The logits of the last block's output `x` (`[S, tokens, hidden]`, its first
    /// [`Readout::rows`] rows computed), and the readout's tape.
    pub(super) fn readout_forward(
        &self,
        x: &E::Tensor,
        s: usize,
        tape: bool,
    ) -> (Vec<f32>, ReadoutTape<E::Tensor>) {
        let c = &self.vit.config;
        let b = Batch::new(s, c.tokens(), c.hidden);
        let readout = c.family.readout;
        let patches = c.rows(Tokens::Patches);
        let mut norms = Vec::new();
        let mut norm = |input: &E::Tensor| -> E::Tensor {
            let (y, stats) = self.e.layer_norm(input, &self.w.norm, tape);
            norms.extend(stats);
            y
        };
        let features = match readout {
            Readout::Cls | Readout::ClsAndDistillation => {
                norm(&self.e.rows(x, b, 0..readout.rows(b.rows)))
            }
            Readout::MeanPatches => {
                let mut pooled = self.e.mean_rows(x, b, patches);
                // The paper's code applies fc_norm twice (QUIRKS.md).
                let twice = self.vit.compat == Compat::Reference;
                for _ in 0..if twice { 2 } else { 1 } {
                    pooled = norm(&pooled);
                }
                pooled
            }
            Readout::ClsAndMeanPatches => {
                let normed = norm(x);
                let pair = Batch::new(s, 2, c.hidden);
                let mut features = self.e.zeros(pair.len());
                let cls = self.e.rows(&normed, b, 0..1);
                self.e
                    .write_rows(&mut features, pair, 0..1, &cls, Write::Set);
                let mean = self.e.mean_rows(&normed, b, patches);
                self.e
                    .write_rows(&mut features, pair, 1..2, &mean, Write::Set);
                features
            }
        };
        let embedded = self.e.linear(&features, s, &self.w.head);
        let Some(zs) = &self.w.zero_shot else {
            let logits = self.e.take_host(embedded);
            return (
                logits,
                ReadoutTape {
                    norms,
                    embedding: None,
                },
            );
        };
        let logits = self.e.take_host(self.e.cosine_logits(&embedded, s, zs));
        let embedding = Some(embedded);
        (logits, ReadoutTape { norms, embedding })
    }

    /// The gradient of the last block's output stream from that of the logits.
    pub(super) fn readout_backward(
        &self,
        tape: &ReadoutTape<E::Tensor>,
        dlogits: Vec<f32>,
        s: usize,
    ) -> E::Tensor {
        let c = &self.vit.config;
        let (b, d) = (Batch::new(s, c.tokens(), c.hidden), c.hidden);
        let readout = c.family.readout;
        let patches = c.rows(Tokens::Patches);
        let dlogits = self.e.upload(dlogits);
        let dhead = match (&self.w.zero_shot, &tape.embedding) {
            (Some(zs), Some(e)) => self.e.cosine_backward(e, &dlogits, s, zs),
            _ => dlogits,
        };
        let head = &self.w.head;
        let mut dfeatures = self.e.linear_backward(&dhead, s, &head.w, head.b.numel());
        let mut dx = self.e.zeros(b.len());
        let gamma = &self.w.norm.gamma;
        match readout {
            Readout::Cls | Readout::ClsAndDistillation => {
                let rows = 0..readout.rows(b.rows);
                self.e
                    .layer_norm_backward(&mut dx, b, rows, &dfeatures, &tape.norms[0], gamma);
            }
            Readout::MeanPatches => {
                let pooled = Batch::new(s, 1, d);
                for stats in tape.norms.iter().rev() {
                    let mut dpooled = self.e.zeros(pooled.len());
                    self.e.layer_norm_backward(
                        &mut dpooled,
                        pooled,
                        0..1,
                        &dfeatures,
                        stats,
                        gamma,
                    );
                    dfeatures = dpooled;
                }
                self.e.spread_mean(&mut dx, b, patches, &dfeatures);
            }
            Readout::ClsAndMeanPatches => {
                let pair = Batch::new(s, 2, d);
                let mut dnormed = self.e.zeros(b.len());
                let dmean = self.e.rows(&dfeatures, pair, 1..2);
                self.e.spread_mean(&mut dnormed, b, patches, &dmean);
                let dcls = self.e.rows(&dfeatures, pair, 0..1);
                self.e.write_rows(&mut dnormed, b, 0..1, &dcls, Write::Set);
                let stats = &tape.norms[0];
                self.e
                    .layer_norm_backward(&mut dx, b, 0..b.rows, &dnormed, stats, gamma);
            }
        }
        dx
    }
}
