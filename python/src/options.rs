//! The keyword options of `Model.paths` (as the Python layer passes them, a dict)
//! turned into the library's job, by the names the command line uses.

use anyhow::{bail, Result};
use neuronpath::attribution::{Integration, Method, ScoreForm, Search, Target};
use neuronpath::data::Preset;
use neuronpath::jobs::paths::PathsJob;
use neuronpath::model::{Activation, Compat, Tokens};
use pyo3::prelude::*;

#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct PathsOptions {
    method: Vec<String>,
    steps: usize,
    integration: String,
    score_form: String,
    target: String,
    top_k: usize,
    beam: usize,
    paths_per_image: usize,
    seed: u64,
    preprocess: Option<String>,
    compat: String,
    tokens: Option<String>,
    unit: String,
    batch: Option<usize>,
    /// Labels of the images of a list or an array (none: unlabelled).
    pub labels: Option<Vec<Option<usize>>>,
    /// A folder's `--label-map`.
    pub label_map: Option<std::path::PathBuf>,
}

/// How `Model.jas` integrates and forms the score.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct JasOptions {
    steps: usize,
    integration: String,
    pub score_form: String,
}

impl JasOptions {
    pub fn rule(&self) -> Result<Integration> {
        integration(&self.integration, self.steps)
    }
}

/// The value of `what` named `name` among `values` (by their `name`), or an error listing them.
fn named<T: Copy>(
    what: &str,
    name: &str,
    values: &[T],
    name_of: fn(T) -> &'static str,
) -> Result<T> {
    match values.iter().find(|&&v| name_of(v) == name) {
        Some(&v) => Ok(v),
        None => {
            let names: Vec<&str> = values.iter().map(|&v| name_of(v)).collect();
            bail!("{what} {name:?}: one of {}", names.join(", "))
        }
    }
}

pub fn integration(name: &str, steps: usize) -> Result<Integration> {
    if !(1..=1000).contains(&steps) {
        bail!("steps {steps}: must be 1 to 1000");
    }
    match name {
        "left-riemann" => Ok(Integration::LeftRiemann(steps)),
        "gauss-legendre" => Ok(Integration::GaussLegendre(steps)),
        _ => bail!("integration {name:?}: one of left-riemann, gauss-legendre"),
    }
}

pub fn score_form(name: &str) -> Result<ScoreForm> {
    named(
        "score_form",
        name,
        &[ScoreForm::Reference, ScoreForm::Paper],
        ScoreForm::name,
    )
}

impl PathsOptions {
    pub fn job(&self) -> Result<PathsJob> {
        let methods = self
            .method
            .iter()
            .map(|m| named("method", m, &Method::ALL, Method::name));
        let targets = [Target::Label, Target::Predicted];
        let presets = [Preset::Checkpoint, Preset::Reference];
        Ok(PathsJob {
            methods: methods.collect::<Result<_>>()?,
            search: Search {
                top_k: self.top_k,
                beam: self.beam,
                paths: self.paths_per_image,
            },
            seed: self.seed,
            rule: integration(&self.integration, self.steps)?,
            form: score_form(&self.score_form)?,
            target: named("target", &self.target, &targets, Target::name)?,
            preprocess: match &self.preprocess {
                Some(p) => Some(named("preprocess", p, &presets, Preset::name)?),
                None => None,
            },
            compat: named("compat", &self.compat, &Compat::ALL, Compat::name)?,
            tokens: match &self.tokens {
                Some(t) => Some(named("tokens", t, &Tokens::ALL, Tokens::name)?),
                None => None,
            },
            unit: match self.unit.as_str() {
                "neuron" => Activation::MlpPost,
                "head" => Activation::AttnZ,
                other => bail!("unit {other:?}: one of neuron, head"),
            },
            batch: match self.batch {
                Some(b) if !(1..=1024).contains(&b) => bail!("batch {b}: must be 1 to 1024"),
                b => b,
            },
        })
    }
}
