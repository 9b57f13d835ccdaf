//! What a forward pass keeps for the backward pass: the model's own, read by the
//! backward pass and by branching, by nothing outside the model. Tensors are the
//! executor's (`T`).

use super::exec::NormStats;
use std::ops::Range;

/// Activations of one block kept for the backward pass.
pub(super) struct BlockTape<T> {
    /// Rows of each sequence the block computed (the last block: those the readout reads).
    pub q_rows: usize,
    pub norm1: NormStats<T>,
    pub qkv: T,
    pub probs: T,
    pub norm2: NormStats<T>,
    /// The FFN non-linearity's derivative at the fc1 output: what its backward
    /// multiplies by.
    pub act_grad: T,
    /// FFN rows overwritten by a [`super::Action::Replace`] (the gradient stops there).
    pub replaced: Option<Range<usize>>,
    /// Attention-output (`attn.z`) rows overwritten likewise.
    pub z_replaced: Option<Range<usize>>,
}

pub(super) struct Tape<T> {
    pub from: usize,
    pub blocks: Vec<BlockTape<T>>,
    pub readout: ReadoutTape<T>,
}

/// What the readout's backward needs: the statistics of each norm applied, the
/// projected embedding of a zero-shot head, and the attention-pooling head's tape.
pub(super) struct ReadoutTape<T> {
    pub norms: Vec<NormStats<T>>,
    pub embedding: Option<T>,
    pub pool: Option<PoolTape<T>>,
}

/// The attention-pooling head's activations kept for the backward pass.
pub(super) struct PoolTape<T> {
    /// The fused Q, K, V of every token (token 0's Q the probe's), and the weights.
    pub qkv: T,
    pub probs: T,
    pub norm: NormStats<T>,
    /// The MLP non-linearity's derivative at its fc1 output.
    pub act_grad: T,
    /// The MLP's values were overwritten by a [`super::Action::Replace`].
    pub replaced: bool,
}
