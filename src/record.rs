//! Path records and the resumable JSON-lines files that results are written to.
//!
//! One object per line. Each line is written whole and flushed; on reopening, a
//! torn last line (a run killed mid-write) is cut off, and the records already
//! present (by their [`Record::key`]) are skipped.

use crate::attribution::NeuronPath;
use crate::data::Preset;
use crate::model::{Compat, Site};
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// A result line: what identifies it, for resuming.
pub trait Record: Serialize + DeserializeOwned {
    fn key(&self) -> String;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathRecord {
    /// Path relative to `--images`.
    pub image: String,
    /// Ground-truth class from the folder, when known.
    pub label: Option<usize>,
    pub label_name: Option<String>,
    pub method: String,
    /// Per layer, input to output: the path neuron (a flat list), or a top-K
    /// path's K neurons in the order found (a list of lists).
    pub path: NeuronPath,
    /// The beam width the path was searched with; absent: 1 (greedy).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub beam: usize,
    /// The path's place among the image's paths of this method, best first
    /// (`--paths-per-image`); absent: 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rank: usize,
    /// Neurons per layer in the model (the CLS FFN width), the range of `path`.
    pub neurons: usize,
    /// Joint Attribution Score of the path.
    pub score: f64,
    /// The class explained, and why that one ("label" or "predicted").
    pub target: usize,
    pub target_source: String,
    pub target_prob: f32,
    pub predicted: usize,
    pub predicted_name: Option<String>,
    pub predicted_prob: f32,
    /// Per layer: clean activation of the path neuron, its step-weighted mean
    /// gradient, and their product (the neuron's own share of the score); for a
    /// top-K path, summed over the layer's neurons that the score counts.
    pub activation: Vec<f64>,
    pub gradient: Vec<f64>,
    pub contribution: Vec<f64>,
    pub integration: String,
    pub steps: usize,
    pub score_form: String,
    pub model: String,
    /// Input normalisation preset ("checkpoint" or "reference").
    pub preprocess: String,
    /// Where the path's neurons live, one site per layer: `blocks.N.mlp.post@cls`
    /// (the CLS token), or `@patches` for MAE, where a neuron is an FFN channel
    /// across the patch tokens; then `activation` is its mean over the tokens,
    /// `gradient` the sum over them, and `contribution` and `score` sum per-token
    /// terms divided by the token norm. Absent in older files: the CLS token.
    #[serde(default)]
    pub sites: Vec<Site>,
    /// Whose arithmetic found and scored the path (`principled` or `reference`).
    #[serde(default)]
    pub compat: Compat,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl PathRecord {
    /// The key of an image's best path of a method (rank 0).
    pub fn key_of(image: &str, method: &str) -> String {
        format!("{image}\t{method}")
    }
}

impl Record for PathRecord {
    fn key(&self) -> String {
        match self.rank {
            0 => PathRecord::key_of(&self.image, &self.method),
            rank => format!("{}\t#{rank}", PathRecord::key_of(&self.image, &self.method)),
        }
    }
}

/// The path records of a file, each image's best path per method only (rank 0):
/// what the experiments and the report take from a file holding several paths per
/// image (`--paths-per-image`).
pub fn read_paths(path: &Path) -> Result<Vec<PathRecord>> {
    let records: Vec<PathRecord> = read_records(path)?;
    Ok(records.into_iter().filter(|r| r.rank == 0).collect())
}

/// An output file opened for appending, with the keys of what it already holds.
pub struct RecordFile<T> {
    path: PathBuf,
    file: File,
    done: HashSet<String>,
    records: PhantomData<T>,
}

impl<T: Record> RecordFile<T> {
    /// Opens (or creates) `path`, dropping a torn final line left by a killed run.
    pub fn open(path: &Path) -> Result<RecordFile<T>> {
        create_parent(path)?;
        let mut done = HashSet::new();
        let mut good_len = 0u64;
        if path.exists() {
            let reader = BufReader::new(
                File::open(path).with_context(|| format!("{}: cannot read", path.display()))?,
            );
            for line in reader.split(b'\n') {
                let line = line?;
                let Ok(record) = serde_json::from_slice::<T>(&line) else {
                    break;
                };
                good_len += line.len() as u64 + 1;
                done.insert(record.key());
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("{}: cannot open for writing", path.display()))?;
        // Whatever follows the last complete record (a torn line) goes.
        file.set_len(good_len)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        Ok(RecordFile {
            path: path.to_path_buf(),
            file,
            done,
            records: PhantomData,
        })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.done.contains(key)
    }

    pub fn append(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("{}: cannot write", self.path.display()))?;
        self.file.flush()?;
        self.done.insert(record.key());
        Ok(())
    }
}

/// Every record of a JSON-lines file (for the experiments and the report); an
/// error names the file and line of a record that does not parse, and a file
/// with no record at all.
pub fn read_records<T: Record>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let records = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!(
                    "{}: line {}: not a {} record",
                    path.display(),
                    i + 1,
                    std::any::type_name::<T>().rsplit("::").next().unwrap_or("")
                )
            })
        })
        .collect::<Result<Vec<T>>>()?;
    if records.is_empty() {
        bail!("{}: no records in the file", path.display());
    }
    Ok(records)
}

/// The preprocessing preset the paths were found with (all records must agree).
pub fn preprocess_of(records: &[PathRecord], file: &Path) -> Result<Preset> {
    let Some(first) = records.first() else {
        bail!("{}: no path records", file.display());
    };
    let name = &first.preprocess;
    if let Some(r) = records.iter().find(|r| &r.preprocess != name) {
        bail!(
            "{}: paths found with different preprocessing ({name} and {}, e.g. {})",
            file.display(),
            r.preprocess,
            r.image
        );
    }
    Preset::from_name(name)
        .with_context(|| format!("{}: unknown preprocessing {name:?}", file.display()))
}

/// The arithmetic the paths were found with (all records must agree).
pub fn compat_of(records: &[PathRecord], file: &Path) -> Result<Compat> {
    let Some(first) = records.first() else {
        bail!("{}: no path records", file.display());
    };
    if let Some(r) = records.iter().find(|r| r.compat != first.compat) {
        bail!(
            "{}: paths found in different modes ({} and {}, e.g. {})",
            file.display(),
            first.compat.name(),
            r.compat.name(),
            r.image
        );
    }
    Ok(first.compat)
}

/// Creates the folder `path` will be written in, when missing.
fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    Ok(())
}

/// Writes a whole output file (stats, pruning results, the report), creating its folder.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    create_parent(path)?;
    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}
