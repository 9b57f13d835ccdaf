//! The keyword options of `Model.paths` (as the Python layer passes them, a dict)
//! turned into the library's job, by the names the command line uses.

use anyhow::{bail, Result};
use neuronpath::attribution::{Integration, Method, Rule, ScoreForm, Search};
use neuronpath::jobs::paths::PathsJob;
use neuronpath::model::Activation;
use neuronpath::names::Named;
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

/// The value of `what` named `name`, or an error listing the names.
fn named<T: Named>(what: &str, name: &str) -> Result<T> {
    match T::from_name(name) {
        Some(v) => Ok(v),
        None => {
            let names: Vec<&str> = T::ALL.iter().map(|v| v.name()).collect();
            bail!("{what} {name:?}: one of {}", names.join(", "))
        }
    }
}

pub fn integration(name: &str, steps: usize) -> Result<Integration> {
    if !(1..=1000).contains(&steps) {
        bail!("steps {steps}: must be 1 to 1000");
    }
    Ok(named::<Rule>("integration", name)?.with(steps))
}

/// Images per batch, 1 to 1024, as the command line takes them (none: the run's default).
pub fn batch(batch: Option<usize>) -> Result<Option<usize>> {
    match batch {
        Some(b) if !(1..=1024).contains(&b) => bail!("batch {b}: must be 1 to 1024"),
        b => Ok(b),
    }
}

pub fn score_form(name: &str) -> Result<ScoreForm> {
    named("score_form", name)
}

impl PathsOptions {
    pub fn job(&self) -> Result<PathsJob> {
        let methods = self.method.iter().map(|m| named::<Method>("method", m));
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
            target: named("target", &self.target)?,
            preprocess: match &self.preprocess {
                Some(p) => Some(named("preprocess", p)?),
                None => None,
            },
            compat: named("compat", &self.compat)?,
            tokens: match &self.tokens {
                Some(t) => Some(named("tokens", t)?),
                None => None,
            },
            unit: match self.unit.as_str() {
                "neuron" => Activation::MlpPost,
                "head" => Activation::AttnZ,
                other => bail!("unit {other:?}: one of neuron, head"),
            },
            batch: batch(self.batch)?,
        })
    }
}
