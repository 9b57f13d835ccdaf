//! The Vision Transformer: weights, checkpoints, forward and input-only backward.

pub mod attention;
pub mod backward;
pub mod checkpoint;
pub mod forward;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod kernels;
pub mod npy;
pub mod vit;

pub use checkpoint::{load, LoadOptions};
pub use forward::{Keep, RowAction};
pub use vit::{CleanTrace, Layout, Normalization, Vit, VitConfig};
