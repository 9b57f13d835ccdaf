//! The readout: from the last block's output to the logits, forward and
//! backward, as the family says ([`Readout`]), then the head (linear, or the
//! zero-shot cosine with class text embeddings of CLIP and SigLIP).

use super::backward::Gradients;
use super::engine::Passes;
use super::exec::{AttentionShape, Batch, Executor, Tensor, Write};
use super::family::{Compat, Readout};
use super::forward::{intervention_at, Keep};
use super::site::{Activation, Intervention, Site, Tokens};
use super::tape::{PoolTape, ReadoutTape};
use super::vit::AttentionPool;

/// What the readout's forward gives.
pub(super) struct ReadoutOut<T> {
    /// `[S, classes]`
    pub logits: Vec<f32>,
    pub tape: ReadoutTape<T>,
    /// With [`Keep::residuals`] or [`Keep::neurons`]: the attention-pooling head's
    /// MLP post-activation ([`Site::HEAD_MLP`]), `[S, intermediate]`.
    pub head: Option<T>,
}

/// What the attention-pooling head gives.
struct Pooled<T> {
    /// `[S, hidden]`
    rows: T,
    /// With [`Keep::tape`].
    tape: Option<PoolTape<T>>,
    /// The MLP's values, kept as [`ReadoutOut::head`].
    head: Option<T>,
}

impl<E: Executor> Passes<'_, E> {
    /// The logits of the last block's output `x` (`[S, tokens, hidden]`, its first
    /// [`Readout::rows`] rows computed), with the interventions at the readout's
    /// sites (the pooling head's MLP) applied.
    pub(super) fn readout_forward(
        &self,
        x: &E::Tensor,
        s: usize,
        interventions: &[Intervention],
        keep: Keep,
    ) -> ReadoutOut<E::Tensor> {
        let c = &self.vit.config;
        let b = Batch::new(s, c.tokens(), c.hidden);
        let readout = c.family.readout;
        let patches = c.rows(Tokens::Patches);
        let mut norms = Vec::new();
        let mut norm = |input: &E::Tensor| -> E::Tensor {
            let (y, stats) = self.e.layer_norm(input, &self.w.norm, keep.tape);
            norms.extend(stats);
            y
        };
        let (mut pool, mut head) = (None, None);
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
            Readout::AttentionPool => {
                let at =
                    intervention_at(interventions, Site::AFTER_BLOCKS, Activation::HeadMlpPost);
                let pooled = self.pool_forward(&norm(x), s, at, keep);
                (pool, head) = (pooled.tape, pooled.head);
                pooled.rows
            }
        };
        let embedded = match &self.w.head {
            Some(h) => self.e.linear(&features, s, h),
            None => features,
        };
        let Some(zs) = &self.w.zero_shot else {
            let logits = self.e.take_host(embedded);
            let tape = ReadoutTape {
                norms,
                embedding: None,
                pool,
            };
            return ReadoutOut { logits, tape, head };
        };
        let mut logits = self.e.take_host(self.e.cosine_logits(&embedded, s, zs));
        logits.iter_mut().for_each(|l| *l += zs.bias);
        let tape = ReadoutTape {
            norms,
            embedding: Some(embedded),
            pool,
        };
        ReadoutOut { logits, tape, head }
    }

    /// The attention-pooling head on the normed tokens `normed` (`[S, tokens,
    /// hidden]`): the probe's query against every token's key, then `a + MLP(LN(a))`
    /// with `intervention` at the MLP's post-activation.
    fn pool_forward(
        &self,
        normed: &E::Tensor,
        s: usize,
        intervention: Option<Intervention>,
        keep: Keep,
    ) -> Pooled<E::Tensor> {
        let c = &self.vit.config;
        let (t, d, f) = (c.tokens(), c.hidden, c.intermediate);
        let pool = self.pool();
        // K and V of every token; the Q of token 0's row replaced by the probe's
        // (only that row is a query: the attention computes one).
        let mut qkv = self.e.linear(normed, s * t, &pool.qkv);
        let probe = self.e.linear(&pool.probe, 1, &pool.qkv);
        let query = self.e.rows(&probe, Batch::new(1, 3, d), 0..1);
        self.e
            .write_rows(&mut qkv, Batch::new(s, 3 * t, d), 0..1, &query, Write::Set);
        let (probs, z) = self.e.attention(&qkv, self.pool_shape(s));
        let attended = self.e.linear(&z, s, &pool.proj);
        drop(z);
        let (h, norm) = self.e.layer_norm(&attended, &pool.norm, keep.tape);
        let act = c.family.activation;
        let mut u = self.e.linear(&h, s, &pool.fc1);
        drop(h);
        let mut g = self.e.activation(&mut u, act, f, keep.tape);
        let replaced = intervention.and_then(|i| self.apply(i, &mut g, Batch::new(s, 1, f), 1));
        let kept = (keep.residuals || keep.neurons).then(|| self.e.duplicate(&g));
        let mut pooled = self.e.linear(&g, s, &pool.fc2);
        self.e.write_rows(
            &mut pooled,
            Batch::new(s, 1, d),
            0..1,
            &attended,
            Write::Add,
        );
        let tape = norm.map(|norm| PoolTape {
            qkv,
            probs,
            norm,
            act_grad: u,
            replaced: replaced.is_some(),
        });
        Pooled {
            rows: pooled,
            tape,
            head: kept,
        }
    }

    /// The model's attention-pooling head (its readout says it has one).
    fn pool(&self) -> &AttentionPool<E::Tensor> {
        self.w
            .pool
            .as_ref()
            .expect("an attention-pooling readout has its head's weights")
    }

    /// The pooling head's attention: one query (the probe's) per sequence.
    fn pool_shape(&self, s: usize) -> AttentionShape {
        let c = &self.vit.config;
        AttentionShape {
            seqs: s,
            tokens: c.tokens(),
            queries: 1,
            heads: c.heads,
            head_dim: c.head_dim(),
        }
    }

    /// The gradient of the last block's output stream from that of the logits; the
    /// gradients at the readout's sites among `sites` go to `grads`.
    pub(super) fn readout_backward(
        &self,
        tape: &ReadoutTape<E::Tensor>,
        dlogits: Vec<f32>,
        s: usize,
        sites: &[Site],
        grads: &mut Gradients,
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
        let mut dfeatures = match &self.w.head {
            Some(head) => self.e.linear_backward(&dhead, s, &head.w, head.b.numel()),
            None => dhead,
        };
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
            Readout::AttentionPool => {
                let pool = tape.pool.as_ref().expect("the pooling head's tape");
                let head_site = sites.contains(&Site::HEAD_MLP);
                let dnormed = self.pool_backward(pool, dfeatures, s, head_site, grads);
                self.e
                    .layer_norm_backward(&mut dx, b, 0..b.rows, &dnormed, &tape.norms[0], gamma);
            }
        }
        dx
    }

    /// The attention-pooling head backwards: the gradient at the normed tokens from
    /// `dpooled` (`[S, hidden]`), and the gradient at its MLP (into `grads`) when
    /// `head_site` asks for it.
    fn pool_backward(
        &self,
        tape: &PoolTape<E::Tensor>,
        dpooled: E::Tensor,
        s: usize,
        head_site: bool,
        grads: &mut Gradients,
    ) -> E::Tensor {
        let c = &self.vit.config;
        let (t, d, f) = (c.tokens(), c.hidden, c.intermediate);
        let pool = self.pool();
        let act = c.family.activation;
        let mut dg = self.e.linear_backward(&dpooled, s, &pool.fc2.w, d);
        if head_site {
            grads.insert(Site::HEAD_MLP, self.e.download(&dg));
        }
        if tape.replaced {
            self.e.zero_rows(&mut dg, Batch::new(s, 1, f), 0..1);
        }
        let du = self.e.activation_backward(dg, &tape.act_grad, act, f);
        let dh = self
            .e
            .linear_backward(&du, s, &pool.fc1.w, act.fc1_width(f));
        drop(du);
        // The residual: d attended = d pooled + the norm's input gradient.
        let mut dattended = dpooled;
        let row = Batch::new(s, 1, d);
        self.e
            .layer_norm_backward(&mut dattended, row, 0..1, &dh, &tape.norm, &pool.norm.gamma);
        let dz = self.e.linear_backward(&dattended, s, &pool.proj.w, d);
        drop(dattended);
        let mut dqkv = self
            .e
            .attention_backward(&tape.qkv, &tape.probs, &dz, self.pool_shape(s));
        // Token 0's Q is the probe's, a constant: no gradient reaches the tokens there.
        self.e.zero_rows(&mut dqkv, Batch::new(s, 3 * t, d), 0..1);
        self.e.linear_backward(&dqkv, s * t, &pool.qkv.w, 3 * d)
    }
}
