//! Which neurons to describe: given as `layer:neuron`, every neuron on some path,
//! or every neuron of some layers.

use crate::data::Preset;
use crate::model::{Activation, Vit};
use crate::record::{self, PathRecord};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// One FFN neuron: its block (counted from 0, as a path's layers) and its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Neuron {
    pub layer: usize,
    pub neuron: usize,
}

impl fmt::Display for Neuron {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}", self.layer, self.neuron)
    }
}

impl FromStr for Neuron {
    type Err = anyhow::Error;

    /// `layer:neuron`, e.g. `3:120`.
    fn from_str(s: &str) -> Result<Neuron> {
        let (layer, neuron) = s
            .split_once(':')
            .with_context(|| format!("{s:?}: a neuron is layer:neuron, e.g. 3:120"))?;
        let number = |part: &str, what: &str| {
            part.trim().parse::<usize>().with_context(|| {
                format!("{s:?}: the {what} {part:?} is invalid: a {what} is a whole number from 0")
            })
        };
        Ok(Neuron {
            layer: number(layer, "layer")?,
            neuron: number(neuron, "neuron")?,
        })
    }
}

/// Which neurons to describe.
pub enum Choice<'a> {
    /// Every neuron on some path of `records` (all methods, every rank), read from
    /// `file` (which errors name).
    OnPaths {
        records: &'a [PathRecord],
        file: &'a Path,
    },
    Given(Vec<Neuron>),
    /// Every neuron of these layers; none: of every layer (an atlas).
    Layers(Option<Vec<usize>>),
}

impl Choice<'_> {
    /// The neurons, sorted, without repeats and checked against `vit`, and the
    /// preprocessing of the paths they come from. For paths, `vit` is set up as
    /// they were found; paths of attention heads are refused.
    pub fn resolve(self, vit: &mut Vit) -> Result<(Vec<Neuron>, Option<Preset>)> {
        let (layers, width) = (vit.config.layers, vit.config.intermediate);
        let (neurons, found) = match self {
            Choice::OnPaths { records, file } => {
                record::as_found(vit, records, file)?;
                record::check_against(vit, records, file)?;
                if vit.unit != Activation::MlpPost {
                    bail!(
                        "{}: paths of attention heads; `neurons` describes FFN neurons",
                        file.display()
                    );
                }
                let found = record::preprocess_of(records, file)?;
                (Neuron::on_paths(records), Some(found))
            }
            Choice::Given(neurons) => (neurons, None),
            Choice::Layers(picked) => {
                let picked = picked.unwrap_or_else(|| (0..layers).collect());
                (Neuron::of_layers(&picked, width), None)
            }
        };
        Ok((Neuron::checked(&neurons, layers, width)?, found))
    }
}

impl Neuron {
    /// Every neuron on some path of `records` (all methods, every rank), sorted.
    fn on_paths(records: &[PathRecord]) -> Vec<Neuron> {
        let set: BTreeSet<Neuron> = records
            .iter()
            .flat_map(|r| r.path.neurons())
            .map(|(layer, neuron)| Neuron { layer, neuron })
            .collect();
        set.into_iter().collect()
    }

    /// Every neuron of `layers`, each with `width` neurons.
    pub fn of_layers(layers: &[usize], width: usize) -> Vec<Neuron> {
        layers
            .iter()
            .flat_map(|&layer| (0..width).map(move |neuron| Neuron { layer, neuron }))
            .collect()
    }

    /// `neurons` sorted and without repeats, each checked against a model of
    /// `layers` blocks of `width` neurons.
    fn checked(neurons: &[Neuron], layers: usize, width: usize) -> Result<Vec<Neuron>> {
        if neurons.is_empty() {
            bail!("no neuron to describe");
        }
        if let Some(n) = neurons
            .iter()
            .find(|n| n.layer >= layers || n.neuron >= width)
        {
            bail!(
                "neuron {n}: the model has {layers} layers (0 to {}) of {width} neurons (0 to {})",
                layers - 1,
                width - 1
            );
        }
        let set: BTreeSet<Neuron> = neurons.iter().copied().collect();
        Ok(set.into_iter().collect())
    }
}
