//! Attribution: which neurons matter. The Joint Attribution Score and the
//! layer-progressive search for the path, and the baselines it is compared with.

pub mod integration;
pub mod jas;

pub use integration::Integration;
pub use jas::{Attributor, ImageContext, PathScore, ScoreForm};
