//! Path records and the resumable JSON-lines file they are written to.
//!
//! One object per line per (image, method). Each line is written whole and
//! flushed; on reopening, a torn last line (a run killed mid-write) is cut off,
//! and the (image, method) pairs already present are skipped.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathRecord {
    /// Path relative to `--images`.
    pub image: String,
    /// Ground-truth class from the folder, when known.
    pub label: Option<usize>,
    pub label_name: Option<String>,
    pub method: String,
    /// One neuron index per layer, input to output.
    pub path: Vec<usize>,
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
    /// gradient, and their product (the neuron's own share of the score).
    pub activation: Vec<f64>,
    pub gradient: Vec<f64>,
    pub contribution: Vec<f64>,
    pub integration: String,
    pub steps: usize,
    pub score_form: String,
    pub model: String,
}

/// An output file opened for appending, with what it already holds.
pub struct PathsFile {
    path: PathBuf,
    file: File,
    done: HashSet<(String, String)>,
}

impl PathsFile {
    /// Opens (or creates) `path`, dropping a torn final line left by a killed run.
    pub fn open(path: &Path) -> Result<PathsFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create folder", dir.display()))?;
        }
        let mut done = HashSet::new();
        let mut good_len = 0u64;
        if path.exists() {
            let reader = BufReader::new(
                File::open(path).with_context(|| format!("{}: cannot read", path.display()))?,
            );
            for line in reader.split(b'\n') {
                let line = line?;
                let Ok(record) = serde_json::from_slice::<PathRecord>(&line) else {
                    break;
                };
                good_len += line.len() as u64 + 1;
                done.insert((record.image, record.method));
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
        Ok(PathsFile {
            path: path.to_path_buf(),
            file,
            done,
        })
    }

    pub fn contains(&self, image: &str, method: &str) -> bool {
        self.done.contains(&(image.to_string(), method.to_string()))
    }

    pub fn append(&mut self, record: &PathRecord) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("{}: cannot write", self.path.display()))?;
        self.file.flush()?;
        self.done
            .insert((record.image.clone(), record.method.clone()));
        Ok(())
    }
}

/// Every record of a paths file (for the experiments and the report).
pub fn read_records(path: &Path) -> Result<Vec<PathRecord>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}: line {}: not a path record", path.display(), i + 1))
        })
        .collect()
}
