//! The batched forward pass with interventions at sites, and its tape.
//!
//! A batch is `S` sequences of one or several images, `[S, tokens, hidden]`,
//! entering block `from`. At every block the values at a site's rows can be
//! replaced or scaled ([`Intervention`]). The last block computes only the rows
//! the readout reads (the CLS row for a CLS readout). The tape is the model's
//! own: the backward pass and branching read it, nothing else does.

use super::engine::{clip, Passes};
use super::exec::{AttentionShape, Batch, Executor, NormStats, Tensor, Write};
use super::site::{Action, Activation, Intervention};
use super::tape::{BlockTape, Tape};
use super::vit::{Block, Linear};
use std::ops::Range;

/// What a forward pass keeps.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Keep {
    /// Everything the input-gradient backward needs.
    pub tape: bool,
    /// The residual stream entering every block and after its attention, and the
    /// neuron values (a clean trace).
    pub residuals: bool,
    /// Just what branching at this block needs: see [`BranchPoint`].
    pub branch_point: Option<usize>,
    /// The neuron values and the last block's output (a scan).
    pub neurons: bool,
}

impl Keep {
    /// The tape only: what a pass followed by a backward needs.
    pub const TAPE: Keep = Keep {
        tape: true,
        residuals: false,
        branch_point: None,
        neurons: false,
    };
}

/// What a later pass needs to run on from block `layer + 1` with block `layer`'s
/// neuron rows changed: the rest of the block does not depend on them.
pub(super) struct BranchPoint<T> {
    /// The stream leaving block `layer`, `[S, tokens, hidden]`.
    pub stream: T,
    /// The neuron rows after block `layer`'s attention, `[S, rows, hidden]`.
    pub mid_rows: T,
}

pub(super) struct ForwardOut<T> {
    /// `[S, classes]`
    pub logits: Vec<f32>,
    /// With [`Keep::residuals`] or [`Keep::neurons`]: the neuron site's values of
    /// each block run, after its action: `[blocks][S * rows * width]`.
    pub neurons: Vec<T>,
    /// With [`Keep::residuals`]: the stream entering each block run and the output (`[blocks + 1]`).
    pub residual: Vec<T>,
    /// With [`Keep::residuals`]: the stream after each block's attention.
    pub mid: Vec<T>,
    /// With [`Keep::neurons`] (and not residuals): the last block's output.
    pub output: Option<T>,
    /// With [`Keep::residuals`] or [`Keep::neurons`], for a model with an
    /// attention-pooling head: its MLP's values ([`super::Site::HEAD_MLP`]).
    pub head: Option<T>,
    pub branch_point: Option<BranchPoint<T>>,
    pub tape: Option<Tape<T>>,
}

/// The intervention at block `l`'s `activation`, if any (at most one).
pub(super) fn intervention_at<'a>(
    interventions: &[Intervention<'a>],
    l: usize,
    activation: Activation,
) -> Option<Intervention<'a>> {
    let mut at = interventions
        .iter()
        .filter(|i| i.site.block == l && i.site.activation == activation);
    let found = at.next().copied();
    assert!(at.next().is_none(), "one intervention per site");
    found
}

/// What one block's attention and FFN leave for the tape and the trace.
struct BlockOut<T> {
    /// With [`Keep::tape`].
    tape: Option<BlockTape<T>>,
    /// With [`Keep::residuals`] or [`Keep::neurons`]: the unit's values at the neuron rows.
    neurons: Option<T>,
}

impl<E: Executor> Passes<'_, E> {
    /// Tokens `[S, tokens, hidden]` of `S` normalised CHW images: the prefix
    /// tokens, the embedded patches, the positions (and the norm before block 0).
    pub(super) fn embed(&self, pixels: &[f32]) -> E::Tensor {
        let c = &self.vit.config;
        let (t, d, prefix) = (c.tokens(), c.hidden, c.family.prefix_tokens());
        let patches = self.vit.patchify(pixels);
        let rows = patches.len() / (c.channels * c.patch_size * c.patch_size);
        let embedded = self
            .e
            .linear(&self.e.upload(patches), rows, &self.w.patch_embed);
        let b = Batch::new(rows / c.patches(), t, d);
        let mut x = self.e.zeros(b.len());
        self.e
            .write_rows(&mut x, b, prefix..t, &embedded, Write::Set);
        self.e
            .write_rows(&mut x, b, 0..prefix, &self.w.prefix, Write::Set);
        self.e
            .write_rows(&mut x, b, 0..t, &self.w.pos_embed, Write::Add);
        match &self.w.norm_pre {
            Some(ln) => self.e.layer_norm(&x, ln, false).0,
            None => x,
        }
    }

    /// Runs blocks `from..layers` on `x = [S, tokens, hidden]` with `interventions`.
    pub(super) fn forward(
        &self,
        mut x: E::Tensor,
        from: usize,
        interventions: &[Intervention],
        keep: Keep,
    ) -> ForwardOut<E::Tensor> {
        let c = &self.vit.config;
        let b = Batch::new(x.numel() / (c.tokens() * c.hidden), c.tokens(), c.hidden);
        assert_eq!(
            x.numel(),
            b.len(),
            "batch is not a whole number of sequences"
        );
        let mut out = ForwardOut {
            logits: Vec::new(),
            neurons: Vec::new(),
            residual: Vec::new(),
            mid: Vec::new(),
            output: None,
            head: None,
            branch_point: None,
            tape: None,
        };
        let mut blocks = Vec::new();
        for l in from..c.layers {
            if keep.residuals {
                out.residual.push(self.e.duplicate(&x));
            }
            let block = self.block_forward(l, &mut x, b, interventions, keep, &mut out);
            out.neurons.extend(block.neurons);
            blocks.extend(block.tape);
        }
        let readout = self.readout_forward(&x, b.seqs, interventions, keep);
        out.logits = readout.logits;
        out.head = readout.head;
        if keep.residuals {
            out.residual.push(x);
        } else if keep.neurons {
            out.output = Some(x);
        }
        if keep.tape {
            out.tape = Some(Tape {
                from,
                blocks,
                readout: readout.tape,
            });
        }
        out
    }

    /// Block `l` on `x` (`b`), its interventions applied; the stream after its
    /// attention and its branch point go to `out` when kept.
    fn block_forward(
        &self,
        l: usize,
        x: &mut E::Tensor,
        b: Batch,
        interventions: &[Intervention],
        keep: Keep,
        out: &mut ForwardOut<E::Tensor>,
    ) -> BlockOut<E::Tensor> {
        let c = &self.vit.config;
        let q = match l + 1 == c.layers {
            true => self.vit.readout_rows(),
            false => b.rows,
        };
        let block = &self.w.blocks[l];
        let z_at = intervention_at(interventions, l, Activation::AttnZ);
        let attn = self.attention_forward(block, x, b, q, z_at, keep);
        if keep.residuals {
            out.mid.push(self.e.duplicate(x));
        }
        let site_rows = c.rows(self.vit.neuron_tokens);
        let mid_rows = (keep.branch_point == Some(l)).then(|| self.e.rows(x, b, site_rows));
        let post_at = intervention_at(interventions, l, Activation::MlpPost);
        let ffn = self.ffn_forward(block, x, b, q, post_at, keep);
        if let Some(mid_rows) = mid_rows {
            out.branch_point = Some(BranchPoint {
                stream: self.e.duplicate(x),
                mid_rows,
            });
        }
        let neurons = match self.vit.unit {
            Activation::MlpPost | Activation::HeadMlpPost => ffn.neurons,
            Activation::AttnZ => attn.z,
        };
        let tape = match (attn.norm1, ffn.norm2) {
            (Some(norm1), Some(norm2)) => Some(BlockTape {
                q_rows: q,
                norm1,
                qkv: attn.qkv,
                probs: attn.probs,
                z_replaced: attn.replaced,
                norm2,
                act_grad: ffn.act_grad,
                replaced: ffn.replaced,
            }),
            _ => None,
        };
        BlockOut { tape, neurons }
    }

    /// `x += proj(attn(LN1(x)))` on the first `q` rows of each sequence, with the
    /// intervention at the heads' output (`attn.z`) applied.
    fn attention_forward(
        &self,
        block: &Block<E::Tensor>,
        x: &mut E::Tensor,
        b: Batch,
        q: usize,
        intervention: Option<Intervention>,
        keep: Keep,
    ) -> AttnOut<E::Tensor> {
        let c = &self.vit.config;
        let (h, norm1) = self.e.layer_norm(x, &block.ln1, keep.tape);
        let qkv = self.e.linear(&h, b.seqs * b.rows, &block.qkv);
        drop(h);
        let shape = AttentionShape {
            seqs: b.seqs,
            tokens: b.rows,
            queries: q,
            heads: c.heads,
            head_dim: c.head_dim(),
        };
        let (probs, mut attn) = self.e.attention(&qkv, shape);
        let site = (Activation::AttnZ, c.head_dim());
        let (replaced, z) =
            self.site_to_residual(&mut attn, x, (b, q), site, intervention, keep, &block.proj);
        AttnOut {
            norm1,
            qkv,
            probs,
            z,
            replaced,
        }
    }

    /// `x += fc2(act(fc1(LN2(x))))` on the first `q` rows of each sequence, with the
    /// intervention at the post-activation applied.
    fn ffn_forward(
        &self,
        block: &Block<E::Tensor>,
        x: &mut E::Tensor,
        b: Batch,
        q: usize,
        intervention: Option<Intervention>,
        keep: Keep,
    ) -> FfnOut<E::Tensor> {
        let c = &self.vit.config;
        let packed = (q < b.rows).then(|| self.e.rows(x, b, 0..q));
        let (h2, norm2) = self
            .e
            .layer_norm(packed.as_ref().unwrap_or(x), &block.ln2, keep.tape);
        drop(packed);
        let activation = c.family.activation;
        let mut u = self.e.linear(&h2, b.seqs * q, &block.fc1);
        drop(h2);
        let mut g = self
            .e
            .activation(&mut u, activation, c.intermediate, keep.tape);
        let site = (Activation::MlpPost, 1);
        let (replaced, neurons) =
            self.site_to_residual(&mut g, x, (b, q), site, intervention, keep, &block.fc2);
        FfnOut {
            norm2,
            act_grad: u,
            neurons,
            replaced,
        }
    }

    /// A site's values `v` (`[S, q, width]`, units of `unit` values each) on their
    /// way to the residual stream `x` (`b`): the intervention applied, the model's
    /// unit rows kept for a trace, then `x += out(v)` on the first `q` rows of each
    /// sequence. Returns the replaced rows and the kept values.
    #[allow(clippy::too_many_arguments)]
    fn site_to_residual(
        &self,
        v: &mut E::Tensor,
        x: &mut E::Tensor,
        (b, q): (Batch, usize),
        (activation, unit): (Activation, usize),
        intervention: Option<Intervention>,
        keep: Keep,
        out: &Linear<E::Tensor>,
    ) -> (Option<Range<usize>>, Option<E::Tensor>) {
        let vb = Batch::new(b.seqs, q, v.numel() / (b.seqs * q));
        let replaced = intervention.and_then(|i| self.apply(i, v, vb, unit));
        let kept = ((keep.residuals || keep.neurons) && self.vit.unit == activation).then(|| {
            let rows = clip(self.vit.config.rows(self.vit.neuron_tokens), q);
            self.e.rows(v, vb, rows)
        });
        let y = self.e.linear(v, b.seqs * q, out);
        self.e.write_rows(x, b, 0..q, &y, Write::Add);
        (replaced, kept)
    }

    /// Applies `intervention` to a site's values `g` (laid out as `b`, a unit being
    /// `unit` consecutive values of a row); returns the rows it replaced.
    pub(super) fn apply(
        &self,
        intervention: Intervention,
        g: &mut E::Tensor,
        b: Batch,
        unit: usize,
    ) -> Option<Range<usize>> {
        let site = self.vit.site_rows(intervention.site);
        let rows = clip(site.clone(), b.rows);
        match intervention.action {
            Action::Replace(values) => {
                let per_seq = site.len() * b.width;
                assert_eq!(
                    values.len(),
                    b.seqs * per_seq,
                    "replacement must be [S, rows, width]"
                );
                let skip = rows.start.saturating_sub(site.start) * b.width;
                let computed: Vec<f32> = values
                    .chunks_exact(per_seq)
                    .flat_map(|v| &v[skip..skip + rows.len() * b.width])
                    .copied()
                    .collect();
                let computed = self.e.upload(computed);
                self.e.write_rows(g, b, rows.clone(), &computed, Write::Set);
                Some(rows)
            }
            Action::Scale(edits) => {
                assert_eq!(edits.len(), b.seqs, "one edit list per sequence");
                self.e.scale_units(g, b, rows, unit, edits);
                None
            }
        }
    }
}

/// With [`Keep::tape`], the norms' statistics.
struct AttnOut<T> {
    norm1: Option<NormStats<T>>,
    qkv: T,
    probs: T,
    /// With [`Keep::residuals`] and heads as the unit: the values at the unit's rows.
    z: Option<T>,
    replaced: Option<Range<usize>>,
}

struct FfnOut<T> {
    norm2: Option<NormStats<T>>,
    act_grad: T,
    neurons: Option<T>,
    replaced: Option<Range<usize>>,
}
