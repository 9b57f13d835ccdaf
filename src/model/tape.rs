//! What a forward pass keeps for the backward pass: the model's own, read by the
//! backward pass and by branching, by nothing outside the model.

use std::ops::Range;

/// Activations of one block kept for the backward pass.
pub(super) struct BlockTape {
    pub q_rows: usize,
    pub xhat1: Vec<f32>,
    pub rstd1: Vec<f32>,
    pub qkv: Vec<f32>,
    pub probs: Vec<f32>,
    pub xhat2: Vec<f32>,
    pub rstd2: Vec<f32>,
    /// The FFN non-linearity's derivative at the fc1 output: what its backward
    /// multiplies by.
    pub act_grad: Vec<f32>,
    /// FFN rows overwritten by a [`Action::Replace`] (the gradient stops there).
    pub replaced: Option<Range<usize>>,
    /// Attention-output (`attn.z`) rows overwritten likewise.
    pub z_replaced: Option<Range<usize>>,
}

pub(super) struct Tape {
    pub from: usize,
    pub blocks: Vec<BlockTape>,
    pub readout: ReadoutTape,
}

/// What the readout's backward needs: `xhat` and `1/std` of each norm applied,
/// and the projected embedding of a zero-shot head.
pub(super) struct ReadoutTape {
    pub norms: Vec<(Vec<f32>, Vec<f32>)>,
    pub embedding: Vec<f32>,
}
