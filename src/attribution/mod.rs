//! Attribution: which neurons matter. The Joint Attribution Score and the
//! layer-progressive search for the path, and the baselines it is compared with.

pub mod baselines;
pub mod context;
pub mod heads;
pub mod integration;
pub mod jas;
pub mod method;
pub mod path;
pub mod search;

pub use context::{ImageContext, Target};
pub use integration::{Integration, Rule};
pub use jas::{Attributor, PathScore, ScoreForm};
pub use method::{FoundPath, Method};
pub use path::NeuronPath;
pub use search::Search;
