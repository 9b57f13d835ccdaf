//! The Vision Transformer: weights, checkpoints, the family description, sites,
//! and the passes attribution asks for (forward with interventions, input-only
//! backward, branching from a clean pass).

pub mod attention;
pub mod backward;
pub mod branch;
pub mod checkpoint;
pub mod direct;
pub mod family;
pub mod fingerprint;
pub mod forward;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod kernels;
pub mod npy;
pub mod readout;
mod rows;
pub mod site;
mod tape;
pub mod vit;

pub use backward::Gradients;
pub use branch::Progression;
pub use checkpoint::{load, LoadOptions, Probe, DEFAULT_PROMPT};
pub use family::{Compat, Family, FfnActivation, Readout};
pub use fingerprint::fingerprint;
pub use site::{Action, Activation, Intervention, Site, Tokens};
pub use vit::{
    Activations, CleanTrace, Filter, Geometry, Layout, Normalization, Vit, VitConfig, ZeroShot,
};
