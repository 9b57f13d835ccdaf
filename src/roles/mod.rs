//! Neuron roles: what a neuron does, read off a dataset and the weights.
//!
//! One forward pass per image gives every requested neuron's activation
//! ([`scan`]): a streaming top-K of its exemplars (score and image only, so memory
//! does not grow with the dataset) and exact per-class sums. The winners are then
//! run again for their heatmaps and for the scale at which the direct effect on
//! the logits is frozen ([`run`]). A [`NeuronRecord`] per neuron holds it all.

mod profile;
mod record;
pub mod run;
pub mod scan;
mod select;
mod topk;

pub use record::{ClassValue, DirectEffect, Exemplar, NeuronRecord};
pub use run::{NeuronScan, Options};
pub use scan::Rank;
pub use select::{Choice, Neuron};
pub use topk::{Hit, TopK};
