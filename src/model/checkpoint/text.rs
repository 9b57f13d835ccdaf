//! The text tower of CLIP and SigLIP, run once per run on the CPU to turn class
//! prompts into zero-shot class rows: token and position embeddings, pre-norm
//! blocks, the final LayerNorm, the features of one position, the text projection,
//! then unit length, as `encode_text(..., normalize=True)` and `get_text_features`
//! followed by normalisation do. CLIP's blocks run under a causal mask and read the
//! EOT token (the last of a prompt's tokens: only the tokens up to it are run, as
//! the padding after it cannot reach it); SigLIP's see every token and read the
//! last position of the prompt padded to the context length ([`Reads`]).

use super::{BlockNames, Scope};
use crate::model::exec::cpu::kernels::{self, matmul, LayerNormOut, MatRef};
use crate::model::exec::{Cpu, Executor};
use crate::model::family::FfnActivation;
use crate::model::vit::{Block, LayerNorm, Linear};
use crate::numeric::softmax_rows;
use anyhow::{bail, Result};
use gemm::Parallelism::None as Serial;

/// A text tower's weights.
pub(crate) struct TextTower {
    /// `[vocab, width]`
    token_embedding: Vec<f32>,
    /// `[context, width]`
    positions: Vec<f32>,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    /// `[embedding, width]`, no bias.
    projection: Linear,
    heads: usize,
    activation: FfnActivation,
    reads: Reads,
}

/// Which position's features are a prompt's embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reads {
    /// The EOT token's, the last of a prompt, under a causal mask (CLIP).
    Eot,
    /// The last position's of a prompt padded to the context length, every token
    /// seeing every other (SigLIP).
    LastPadded,
}

/// What a layout calls the text tower's parts, and its sizes (the rest is read off
/// the tensors).
pub(crate) struct TextNames {
    pub token_embedding: &'static str,
    /// The position embedding (`[context, width]`).
    pub positions: &'static str,
    /// The blocks, `{layers}.{i}`.
    pub layers: &'static str,
    pub block: BlockNames,
    pub final_norm: &'static str,
}

/// Sizes a config states and the tensors do not.
pub(crate) struct TextConfig {
    pub heads: usize,
    pub activation: FfnActivation,
    pub eps: f32,
    pub reads: Reads,
}

impl TextTower {
    /// The tower under `scope`, with the projection (`[embedding, width]`) the
    /// caller read (its name and orientation differ between layouts).
    pub(crate) fn load(
        scope: &mut Scope,
        names: &TextNames,
        config: &TextConfig,
        projection: Linear,
    ) -> Result<TextTower> {
        let [vocab, width] = scope.shape_n(names.token_embedding)?;
        let token_embedding = scope.take(names.token_embedding, &[vocab, width])?;
        let [context, _] = scope.shape_n(names.positions)?;
        let positions = scope.take(names.positions, &[context, width])?;
        let heads = config.heads;
        if context == 0 || width == 0 || heads == 0 || width % heads != 0 {
            bail!(
                "{}: a text tower of width {width}, {context} positions and {heads} heads cannot run",
                scope.file().display()
            );
        }
        if projection.w.len() != projection.b.len() * width {
            bail!(
                "{}: the text projection does not take the text tower's width {width}",
                scope.file().display()
            );
        }
        let layers = scope.count(names.layers);
        let f = scope.dim(&format!("{}.0.{}.weight", names.layers, names.block.fc1), 0)?;
        let blocks = (0..layers)
            .map(|i| {
                let mut b = scope.pp(&format!("{}.{i}", names.layers));
                names
                    .block
                    .block(&mut b, width, f, config.eps, config.activation)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TextTower {
            token_embedding,
            positions,
            blocks,
            final_norm: scope.norm(names.final_norm, width, config.eps)?,
            projection,
            heads,
            activation: config.activation,
            reads: config.reads,
        })
    }

    /// Which position it reads.
    pub(crate) fn reads(&self) -> Reads {
        self.reads
    }

    /// Rows of the token embedding: the vocabulary size the tokenizer must match.
    pub(crate) fn vocab(&self) -> usize {
        self.token_embedding.len() / self.width()
    }

    /// Positions: the longest token sequence.
    pub(crate) fn context(&self) -> usize {
        self.positions.len() / self.width()
    }

    pub(crate) fn embedding(&self) -> usize {
        self.projection.b.len()
    }

    fn width(&self) -> usize {
        self.final_norm.gamma.len()
    }

    /// Unit-length embeddings `[sequences, embedding]` of token sequences (ids below
    /// `vocab`; each ending in EOT and at most `context` long, or for
    /// [`Reads::LastPadded`] padded to `context`).
    pub(crate) fn embed(&self, sequences: &[Vec<u32>]) -> Vec<f32> {
        let w = self.width();
        let mut x: Vec<f32> = sequences
            .iter()
            .flat_map(|ids| {
                ids.iter().enumerate().flat_map(|(p, &id)| {
                    let token = &self.token_embedding[id as usize * w..][..w];
                    let position = &self.positions[p * w..][..w];
                    token.iter().zip(position).map(|(t, q)| t + q)
                })
            })
            .collect();
        let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
        for block in &self.blocks {
            self.block(block, &mut x, &lengths);
        }
        let mut last = Vec::with_capacity(sequences.len() * w);
        let mut end = 0;
        for n in &lengths {
            end += n;
            last.extend_from_slice(&x[(end - 1) * w..end * w]);
        }
        let normed = norm(&self.final_norm, &last);
        let e = self.embedding();
        let mut out = Cpu.linear(&normed, sequences.len(), &self.projection);
        for row in out.chunks_exact_mut(e) {
            let length = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.iter_mut().for_each(|v| *v /= length);
        }
        out
    }

    /// `x += attn(ln1(x)); x += fc2(act(fc1(ln2(x))))` over all sequences' rows.
    fn block(&self, b: &Block, x: &mut [f32], lengths: &[usize]) {
        let (w, rows) = (self.width(), x.len() / self.width());
        let qkv = Cpu.linear(&norm(&b.ln1, x), rows, &b.qkv);
        let mut attended = vec![0f32; rows * w];
        let mut start = 0;
        for &n in lengths {
            let range = start * w..(start + n) * w;
            self.attention(
                &qkv[start * 3 * w..(start + n) * 3 * w],
                n,
                &mut attended[range],
            );
            start += n;
        }
        kernels::add_assign(x, &Cpu.linear(&attended, rows, &b.proj));
        let f = b.fc2.w.len() / w;
        let mut u = Cpu.linear(&norm(&b.ln2, x), rows, &b.fc1);
        let g = Cpu.activation(&mut u, self.activation, f, false);
        kernels::add_assign(x, &Cpu.linear(&g, rows, &b.fc2));
    }

    /// Multi-head attention of one sequence of `n` tokens where token `i` sees
    /// tokens `0..=i` (CLIP's causal mask), or all of them.
    fn attention(&self, qkv: &[f32], n: usize, out: &mut [f32]) {
        let causal = self.reads == Reads::Eot;
        let w = self.width();
        let dh = w / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut scores = vec![0f32; n * n];
        for h in 0..self.heads {
            let q = MatRef::strided(&qkv[h * dh..], n, dh, 3 * w, 1);
            let k = MatRef::strided(&qkv[w + h * dh..], n, dh, 3 * w, 1);
            let v = MatRef::strided(&qkv[2 * w + h * dh..], n, dh, 3 * w, 1);
            matmul(&mut scores, n, q, k.t(), false, Serial);
            for (i, row) in scores.chunks_exact_mut(n).enumerate() {
                row.iter_mut().for_each(|s| *s *= scale);
                let seen = if causal { i + 1 } else { n };
                softmax_rows(&mut row[..seen], seen);
                row[seen..].fill(0.0);
            }
            matmul(
                &mut out[h * dh..],
                w,
                MatRef::new(&scores, n, n),
                v,
                false,
                Serial,
            );
        }
    }
}

/// LayerNorm of each row.
fn norm(ln: &LayerNorm, x: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    let out = LayerNormOut {
        y: &mut y,
        xhat: None,
        rstd: None,
    };
    kernels::layer_norm(x, &ln.gamma, &ln.beta, ln.eps, out);
    y
}
