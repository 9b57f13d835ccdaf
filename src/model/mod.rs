//! The Vision Transformer: weights, checkpoints, the family description, sites,
//! and the passes attribution asks for (forward with interventions, input-only
//! backward, branching from a clean pass), written once over the executors that
//! run them ([`exec`]: the CPU, a GPU).

pub mod backward;
pub mod branch;
pub mod checkpoint;
pub mod direct;
mod engine;
pub mod exec;
pub mod family;
pub mod fingerprint;
pub mod forward;
pub mod npy;
pub mod readout;
pub mod site;
mod tape;
pub mod vit;

pub use backward::Gradients;
pub use branch::Progression;
pub use checkpoint::{load, LoadOptions, Probe, DEFAULT_PROMPT};
pub use exec::cpu::kernels::reuse_freed_buffers;
pub use family::{Compat, Family, FfnActivation, Readout};
pub use fingerprint::fingerprint;
pub use site::{Action, Activation, Intervention, Site, Tokens};
pub use vit::{
    Activations, CleanTrace, Filter, Geometry, Layout, Normalization, Vit, VitConfig, Weights,
    ZeroShot,
};
