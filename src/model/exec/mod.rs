//! Where a pass's arithmetic runs. The passes (forward with interventions, the
//! input-only backward, the readout, branching) are written once, over
//! [`Executor`]; the CPU's ([`Cpu`]) and the GPU's ([`gpu::Gpu`]) differ in where
//! tensors live and how each step is computed, never in what is computed.
//!
//! Every activation of a pass is a flat `f32` tensor laid out as a [`Batch`]:
//! sequences of rows of values, back to back (`[S, tokens, hidden]`,
//! `[S, rows, ffn]`, ...). An executor offers the steps a ViT pass is made of on
//! such tensors: linear layers and their input gradient, LayerNorm, attention,
//! the FFN non-linearities, row copies, the readout's pooling and cosine head.

pub mod cpu;
pub mod gpu;

pub use cpu::Cpu;

use super::family::FfnActivation;
use super::vit::{LayerNorm, Linear, Vit, Weights, ZeroShot};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// Floating-point operations of the matrix products run so far, on any executor
/// (2 per multiply-add), for the benchmark's FLOP/s figure: they are >95% of the
/// work; element-wise steps are not counted.
pub static GEMM_FLOPS: AtomicU64 = AtomicU64::new(0);

/// Counts a product of `m x k` by `k x n` in [`GEMM_FLOPS`].
pub(crate) fn count_gemm(m: usize, k: usize, n: usize) {
    GEMM_FLOPS.fetch_add(2 * (m * n * k) as u64, Ordering::Relaxed);
}

/// `seqs` sequences of `rows` rows of `width` values each, back to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    pub seqs: usize,
    pub rows: usize,
    pub width: usize,
}

impl Batch {
    pub fn new(seqs: usize, rows: usize, width: usize) -> Batch {
        Batch { seqs, rows, width }
    }

    /// Values in all.
    pub fn len(&self) -> usize {
        self.seqs * self.rows * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same sequences with `rows` rows each.
    pub fn with_rows(self, rows: usize) -> Batch {
        Batch { rows, ..self }
    }
}

/// How [`Executor::write_rows`] puts values into place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Set,
    Add,
}

/// The shape of one attention step: `seqs` sequences of `tokens` rows, of which
/// the first `queries` are computed (the last block needs only the rows the
/// readout reads), `heads` heads of `head_dim` values. Q, K and V are fused per
/// row, `[tokens, 3 * heads * head_dim]`, heads contiguous inside each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub seqs: usize,
    pub tokens: usize,
    pub queries: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// What a LayerNorm's backward needs: the normalised rows and `1 / std` per row.
pub struct NormStats<T> {
    pub xhat: T,
    pub rstd: T,
}

impl<T> NormStats<T> {
    pub fn map(&self, f: impl Fn(&T) -> T) -> NormStats<T> {
        NormStats {
            xhat: f(&self.xhat),
            rstd: f(&self.rstd),
        }
    }
}

/// A flat `f32` buffer of an executor.
pub trait Tensor: Send + Sync {
    /// Values it holds.
    fn numel(&self) -> usize;
}

impl Tensor for Vec<f32> {
    fn numel(&self) -> usize {
        self.len()
    }
}

/// The steps of a ViT pass on one kind of device. Tensors are laid out as the
/// arguments' [`Batch`]es say; a packed row set `[S, rows.len(), width]` holds the
/// given rows of every sequence, in order.
pub trait Executor: Send + Sync {
    type Tensor: Tensor;

    /// The model's weights as this executor holds them (uploaded once).
    fn weights<'a>(&'a self, vit: &'a Vit) -> &'a Weights<Self::Tensor>;

    fn upload(&self, values: Vec<f32>) -> Self::Tensor;
    fn download(&self, t: &Self::Tensor) -> Vec<f32>;
    /// The values of a tensor no longer needed here.
    fn take_host(&self, t: Self::Tensor) -> Vec<f32>;
    fn zeros(&self, len: usize) -> Self::Tensor;
    fn duplicate(&self, t: &Self::Tensor) -> Self::Tensor;

    /// Rows `rows` of every sequence of `x`, packed.
    fn rows(&self, x: &Self::Tensor, b: Batch, rows: Range<usize>) -> Self::Tensor;
    /// Rows `rows` of every sequence of `dst` set to (or incremented by) the packed
    /// `src`, or by `src` of one sequence's rows (`[rows.len(), width]`) given to all.
    fn write_rows(
        &self,
        dst: &mut Self::Tensor,
        b: Batch,
        rows: Range<usize>,
        src: &Self::Tensor,
        how: Write,
    );
    /// Rows `rows` of every sequence of `x` set to zero.
    fn zero_rows(&self, x: &mut Self::Tensor, b: Batch, rows: Range<usize>);
    /// The sequences `order` of `x` (`seqs` equal parts), in that order.
    fn gather(&self, x: &Self::Tensor, seqs: usize, order: &[usize]) -> Self::Tensor;

    /// `x[rows, in] W^T + b` for a torch-layout `W[out, in]`.
    fn linear(&self, x: &Self::Tensor, rows: usize, layer: &Linear<Self::Tensor>) -> Self::Tensor;
    /// `dy[rows, out] W`: the input gradient of [`Executor::linear`] with `W[out, in]`.
    fn linear_backward(
        &self,
        dy: &Self::Tensor,
        rows: usize,
        w: &Self::Tensor,
        out: usize,
    ) -> Self::Tensor;

    /// LayerNorm of every row; with `stats`, what its backward needs.
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        norm: &LayerNorm<Self::Tensor>,
        stats: bool,
    ) -> (Self::Tensor, Option<NormStats<Self::Tensor>>);
    /// Adds to rows `rows` of every sequence of `dx` the input gradient of a
    /// LayerNorm given the packed `dy` at its output.
    fn layer_norm_backward(
        &self,
        dx: &mut Self::Tensor,
        b: Batch,
        rows: Range<usize>,
        dy: &Self::Tensor,
        stats: &NormStats<Self::Tensor>,
        gamma: &Self::Tensor,
    );

    /// Softmax attention: the weights `[S, heads, queries, tokens]` and the output
    /// `[S, queries, heads * head_dim]`.
    fn attention(&self, qkv: &Self::Tensor, a: AttentionShape) -> (Self::Tensor, Self::Tensor);
    /// The gradient at `qkv` from `dout` at the attention output.
    fn attention_backward(
        &self,
        qkv: &Self::Tensor,
        probs: &Self::Tensor,
        dout: &Self::Tensor,
        a: AttentionShape,
    ) -> Self::Tensor;

    /// The FFN non-linearity of fc1's output `u` (rows of `act.fc1_width(neurons)`),
    /// `[rows, neurons]`; with `keep`, `u` is replaced by what its backward multiplies by.
    fn activation(
        &self,
        u: &mut Self::Tensor,
        act: FfnActivation,
        neurons: usize,
        keep: bool,
    ) -> Self::Tensor;
    /// The gradient at fc1's output from `dg` at the neurons and the derivative kept.
    fn activation_backward(
        &self,
        dg: Self::Tensor,
        kept: &Self::Tensor,
        act: FfnActivation,
        neurons: usize,
    ) -> Self::Tensor;

    /// Unit `n` (`unit` consecutive values of a row) multiplied by `factor` at rows
    /// `rows` of sequence `s`, for each `(n, factor)` of `edits[s]`.
    fn scale_units(
        &self,
        x: &mut Self::Tensor,
        b: Batch,
        rows: Range<usize>,
        unit: usize,
        edits: &[Vec<(usize, f32)>],
    );

    /// The mean of rows `rows` of every sequence, `[S, width]`.
    fn mean_rows(&self, x: &Self::Tensor, b: Batch, rows: Range<usize>) -> Self::Tensor;
    /// Rows `rows` of every sequence of `dx` set to `g / rows.len()` (`g`: `[S,
    /// width]`): the mean's backward.
    fn spread_mean(&self, dx: &mut Self::Tensor, b: Batch, rows: Range<usize>, g: &Self::Tensor);

    /// Zero-shot logits `scale * <e / |e|, text[c]>` of embeddings `e` `[S, dim]`.
    fn cosine_logits(
        &self,
        e: &Self::Tensor,
        seqs: usize,
        zs: &ZeroShot<Self::Tensor>,
    ) -> Self::Tensor;
    /// The gradient at `e` from `dlogits` of [`Executor::cosine_logits`].
    fn cosine_backward(
        &self,
        e: &Self::Tensor,
        dlogits: &Self::Tensor,
        seqs: usize,
        zs: &ZeroShot<Self::Tensor>,
    ) -> Self::Tensor;
}
