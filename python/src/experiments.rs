//! The experiments on records, as functions: `manipulate` (run as
//! `neuronpath::jobs::manipulate`, as the CLI runs it), `summarize`, `stats` and
//! `report`. Records cross as JSON text.

use crate::arrays::{array_in, pixels_of};
use crate::model::{json, Model};
use crate::progress::PyProgress;
use crate::to_py;
use anyhow::{Context, Result};
use neuronpath::experiments::manipulate::{summarize as summaries, ManipulationRecord, Op};
use neuronpath::experiments::stats::{all_stats, StatsFile};
use neuronpath::jobs::{manipulate as job, Pixels};
use neuronpath::record::{unrecorded, PathRecord, RecordFile};
use pyo3::prelude::*;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// What messages call records that came from memory.
const RECORDS: &str = "records";

/// Records from JSON text; an error names the record that does not parse.
pub fn parse<T: DeserializeOwned>(records: &[String], kind: &str) -> PyResult<Vec<T>> {
    let parse = |(i, r): (usize, &String)| {
        serde_json::from_str(r).with_context(|| format!("{RECORDS}[{i}]: not a {kind} record"))
    };
    records
        .iter()
        .enumerate()
        .map(parse)
        .collect::<Result<_>>()
        .map_err(to_py)
}

/// Removes or enhances each record's path on its image (a folder given to `paths`,
/// or the `[N, 3, H, W]` pixels they were found on), as `neuronpath manipulate`.
#[pyfunction]
#[pyo3(signature = (model, records, images, op="both", out=None, progress=None))]
pub fn manipulate(
    py: Python<'_>,
    mut model: PyRefMut<'_, Model>,
    records: Vec<String>,
    images: &Bound<'_, PyAny>,
    op: &str,
    out: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Vec<String>> {
    let records: Vec<PathRecord> = parse(&records, "path")?;
    let records: Vec<PathRecord> = records.into_iter().filter(|r| r.rank == 0).collect();
    let ops: &[Op] = match op {
        "remove" => &[Op::Remove],
        "enhance" => &[Op::Enhance],
        "both" => &[Op::Remove, Op::Enhance],
        _ => {
            return Err(to_py(anyhow::anyhow!(
                "op {op:?}: one of remove, enhance, both"
            )))
        }
    };
    let array = array_in(images)?;
    let root = match &array {
        Some(_) => None,
        None => Some(images.extract::<PathBuf>().map_err(|_| {
            to_py(anyhow::anyhow!(
                "images: the folder the paths were found on, or their [N, 3, H, W] float32 numpy array"
            ))
        })?),
    };
    let pixels = match (&array, &root) {
        (Some(a), _) => Pixels::Array(pixels_of(&model.vit, a)?),
        (_, Some(root)) => Pixels::Files(root),
        (None, None) => unreachable!("one of them"),
    };
    let progress = PyProgress::new(progress);
    let model: &mut Model = &mut model;
    let file = model.file.clone();
    let done = progress.watch(py, || {
        model.set_up(|vit| {
            run_manipulate(vit, &file, &records, pixels, ops, out.as_deref(), &progress)
        })
    });
    progress.result(done)?.iter().map(json).collect()
}

/// A manipulation run on the path records, into memory and `out`.
fn run_manipulate(
    vit: &mut neuronpath::model::Vit,
    model: &Path,
    records: &[PathRecord],
    pixels: Pixels,
    ops: &[Op],
    out: Option<&Path>,
    progress: &PyProgress,
) -> Result<Vec<ManipulationRecord>> {
    let source = Path::new(RECORDS);
    let norm = neuronpath::record::as_found(vit, records, source)?;
    neuronpath::record::check_against(vit, records, source)?;
    job::check_sources(vit, model, records, pixels, source)?;
    let made_with = records.iter().find_map(|r| r.model_fingerprint.clone());
    let settings = [("model fingerprint", made_with.unwrap_or_else(unrecorded))];
    let mut file = match out {
        Some(path) => Some(RecordFile::<ManipulationRecord>::open(path, &settings)?),
        None => None,
    };
    let out_file = out.unwrap_or(source);
    let mut images = job::plan(records, ops, file.as_ref(), out_file, source)?;
    images.retain(|(_, items)| !items.is_empty());
    let mut got = Vec::new();
    let mut sink = |record: ManipulationRecord| {
        if let Some(file) = &mut file {
            file.append(record.clone())?;
        }
        got.push(record);
        Ok(())
    };
    job::run(vit, &norm, pixels, &images, source, &mut sink, progress)?;
    Ok(got)
}

/// Per method and operation, the mean probability deviation and the accuracy
/// before and after, of manipulation records.
#[pyfunction]
pub fn summarize(records: Vec<String>) -> PyResult<String> {
    let records: Vec<ManipulationRecord> = parse(&records, "manipulation")?;
    json(&summaries(&records))
}

/// Class statistics of path records (as `neuronpath stats` writes them).
#[pyfunction]
pub fn stats(records: Vec<String>) -> PyResult<String> {
    let records: Vec<PathRecord> = parse(&records, "path")?;
    let records: Vec<PathRecord> = records.into_iter().filter(|r| r.rank == 0).collect();
    json(&all_stats(&records).map_err(to_py)?)
}

/// Writes the HTML report of path records (and manipulation records, stats) to
/// `out`; returns the images shown without a thumbnail (one message each).
#[pyfunction]
#[pyo3(signature = (records, out, manipulations=vec![], stats=None, images=None, neurons=vec![], neuron_images=None))]
#[allow(clippy::too_many_arguments)]
pub fn report(
    py: Python<'_>,
    records: Vec<String>,
    out: PathBuf,
    manipulations: Vec<String>,
    stats: Option<String>,
    images: Option<PathBuf>,
    neurons: Vec<String>,
    neuron_images: Option<PathBuf>,
) -> PyResult<Vec<String>> {
    let records: Vec<PathRecord> = parse(&records, "path")?;
    let stats: Option<StatsFile> = match stats {
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
            to_py(anyhow::anyhow!(
                "stats: not the stats of neuronpath.stats: {e}"
            ))
        })?),
        None => None,
    };
    let inputs = neuronpath::report::Inputs {
        records: records.into_iter().filter(|r| r.rank == 0).collect(),
        manipulations: parse(&manipulations, "manipulation")?,
        stats,
        neuron_images: neuron_images.or(images.clone()).unwrap_or_default(),
        images: images.unwrap_or_default(),
        neurons: parse(&neurons, "neuron")?,
        sources: vec![RECORDS.into()],
    };
    let page = py.detach(|| -> Result<_> {
        let names = neuronpath::report::Names {
            paths: RECORDS,
            manipulate: "manipulations",
            stats: "stats",
            neurons: "neurons",
        };
        neuronpath::report::check(&inputs, &names)?;
        let report = neuronpath::report::render(&inputs).context(RECORDS)?;
        let marker = "<title>neuronpath report</title>";
        neuronpath::record::write_output(&out, report.html.as_bytes(), marker)?;
        Ok(report)
    });
    Ok(page.map_err(to_py)?.missing_images)
}
