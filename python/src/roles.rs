//! `neuronpath.neurons`: what neurons do, read off a dataset (`neuronpath::roles`,
//! as `neuronpath neurons` runs it). Records cross as JSON text.

use crate::experiments::parse;
use crate::model::{json, Model};
use crate::progress::PyProgress;
use crate::to_py;
use anyhow::{bail, Result};
use neuronpath::data::{self, ImageSet, Preset};
use neuronpath::model::Vit;
use neuronpath::names::Named;
use neuronpath::record::{PathRecord, RecordFile};
use neuronpath::roles::{run, Choice, Neuron, NeuronRecord, NeuronScan, Options, Rank};
use pyo3::prelude::*;
use std::path::{Path, PathBuf};

/// Which neurons, and how to read them.
pub struct Asked {
    paths: Option<Vec<PathRecord>>,
    neurons: Vec<(usize, usize)>,
    layers: Vec<usize>,
    top: usize,
    rank: Option<Rank>,
    preprocess: Option<Preset>,
    batch: Option<usize>,
}

/// Describes neurons over `images` (a folder, a file or a list of files), as
/// `neuronpath neurons`: those on the paths of `paths` (records), the `neurons`
/// given as (layer, neuron), or every neuron of `layers`. With `out`, the records
/// are appended there and the scan's state is kept beside it (resumable).
#[pyfunction]
#[pyo3(signature = (model, images, paths=None, neurons=vec![], layers=vec![], top=16, rank=None, preprocess=None, batch=None, label_map=None, out=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn neurons(
    py: Python<'_>,
    mut model: PyRefMut<'_, Model>,
    images: &Bound<'_, PyAny>,
    paths: Option<Vec<String>>,
    neurons: Vec<(usize, usize)>,
    layers: Vec<usize>,
    top: usize,
    rank: Option<String>,
    preprocess: Option<String>,
    batch: Option<usize>,
    label_map: Option<PathBuf>,
    out: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Vec<String>> {
    let asked = Asked {
        paths: paths.map(|p| parse(&p, "path")).transpose()?,
        neurons,
        layers,
        top,
        rank: rank.map(|r| choice("rank", &r)).transpose()?,
        preprocess: preprocess.map(|p| choice("preprocess", &p)).transpose()?,
        batch: crate::options::batch(batch).map_err(to_py)?,
    };
    // Labels give the class profiles; images without one are scanned all the same.
    let set = model
        .image_set(images, None, label_map.as_deref(), false)
        .map_err(to_py)?;
    let progress = PyProgress::new(progress);
    progress.notes(&set.notes);
    let model: &mut Model = &mut model;
    let file = model.file.clone();
    let found = progress.watch(py, || {
        model.set_up(|vit| describe(vit, &file, &set, &asked, out.as_deref(), &progress))
    });
    progress.result(found)?.iter().map(json).collect()
}

/// A library choice by name, or an error listing the names.
fn choice<T: Named>(what: &str, name: &str) -> PyResult<T> {
    T::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = T::ALL.iter().map(|v| v.name()).collect();
        to_py(anyhow::anyhow!(
            "{what} {name:?}: one of {}",
            names.join(", ")
        ))
    })
}

/// The neurons asked for, checked, and the preprocessing; sets `vit` up as the
/// paths were found.
fn chosen(vit: &mut Vit, asked: &Asked) -> Result<(Vec<Neuron>, Preset)> {
    let choice = match &asked.paths {
        Some(records) => Choice::OnPaths {
            records,
            file: Path::new("paths"),
        },
        None if !asked.neurons.is_empty() => Choice::Given(
            (asked.neurons.iter())
                .map(|&(layer, neuron)| Neuron { layer, neuron })
                .collect(),
        ),
        None => Choice::Layers(Some(asked.layers.clone())),
    };
    let (neurons, found) = choice.resolve(vit)?;
    Ok((
        neurons,
        asked.preprocess.or(found).unwrap_or(Preset::Checkpoint),
    ))
}

/// The scan and the records, kept in memory and appended to `out` when given.
fn describe(
    vit: &mut Vit,
    model: &Path,
    set: &ImageSet,
    asked: &Asked,
    out: Option<&Path>,
    progress: &PyProgress,
) -> Result<Vec<NeuronRecord>> {
    let (neurons, preprocess) = chosen(vit, asked)?;
    let rank = asked.rank.unwrap_or_else(|| Rank::default_for(vit));
    let fingerprint = neuronpath::model::fingerprint(model, vit)?;
    let settings = NeuronRecord::shared(&fingerprint, rank, preprocess);
    let mut file = out
        .map(|o| RecordFile::<NeuronRecord>::open(o, &settings))
        .transpose()?;
    let todo: Vec<Neuron> = (neurons.into_iter())
        .filter(|n| !file.as_ref().is_some_and(|f| f.contains(&n.to_string())))
        .collect();
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    let norm = data::normalization(vit, preprocess);
    let job = NeuronScan {
        set,
        norm: &norm,
        neurons: todo,
        options: Options {
            rank,
            top: asked.top,
            batch: asked
                .batch
                .unwrap_or_else(|| Options::default_batch(vit, rank)),
            preprocess,
        },
        model: (model.display().to_string(), fingerprint),
    };
    let state = out.map(run::state_file);
    let Some((records, _)) = job.describe(vit, state.as_deref(), progress)? else {
        bail!("stopped (the scan's state is kept beside out; run again to resume)");
    };
    if let Some(file) = &mut file {
        for record in &records {
            file.append(record.clone())?;
        }
    }
    if let Some(state) = &state {
        std::fs::remove_file(state).ok();
    }
    Ok(records)
}
