//! neuronpath: influential neuron paths in Vision Transformers
//! (Wang et al., "Discovering Influential Neuron Path in Vision Transformers", ICLR 2025).

pub mod attribution;
pub mod data;
pub mod experiments;
pub mod files;
pub mod jobs;
pub mod model;
pub mod names;
pub mod numeric;
pub mod progress;
pub mod record;
pub mod report;
pub mod roles;
pub mod shards;
