//! Path records and the resumable JSON-lines files that results are written to.
//!
//! One object per line. Each line is written whole and flushed. A file is written
//! by one run at a time (it is locked while open). On reopening, every line must be
//! a record of the file's kind made with the same settings as the new run, else the
//! file is left as it is and refused; only a torn last line (a run killed mid-write)
//! is cut off. The records already present (by their [`Record::key`]) are skipped.

use crate::attribution::{Method, NeuronPath, Rule, ScoreForm, Target};
use crate::data::Preset;
use crate::model::{Activation, Compat, Normalization, Site, Tokens, Vit};
use crate::names::Named;
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

mod check;
pub use check::check_against;

/// A setting a record was made with, as `(name, value)`: a run may add records to
/// a file only when it asks for the same.
pub type Setting = (&'static str, String);

/// A result line: what identifies it, for resuming, and what decided it.
pub trait Record: Serialize + DeserializeOwned {
    /// What a record is, for messages ("path", "manipulation").
    const KIND: &'static str;
    /// The field every record of this kind begins with (a torn first line is
    /// recognised by it).
    const FIRST_FIELD: &'static str = "image";
    /// The settings every record of one file shares: a file never mixes models
    /// (or, for path records, runs); its readers refuse one that does.
    const SHARED: &'static [&'static str] = &["model fingerprint"];
    fn key(&self) -> String;
    /// Everything besides the key that decides the record's values.
    fn settings(&self) -> Vec<Setting>;
    /// What a record must be on its own (an edited file may say anything); an
    /// error names the field and its value.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// A record kind a sharded run (`--shard`) writes, as [`crate::shards::merge`] merges it.
pub trait Shardable: Record {
    /// Whether every record is of one image, and every image that did not fail
    /// has records (false for records that sum up many images).
    const PER_IMAGE: bool = true;

    /// The image the record is of; none for a record that sums up many images
    /// (they are merged with [`Shardable::combine`]).
    fn image(&self) -> Option<&str>;

    /// One record made of two of the same key from different shards (e.g. two
    /// top-K lists merged). Per-image records never meet: the default refuses.
    fn combine(self, _other: Self) -> Result<Self> {
        bail!(
            "a {} record of key {:?} is in two shards",
            Self::KIND,
            self.key()
        )
    }
}

/// How a setting reads when an older version did not record it.
pub fn unrecorded() -> String {
    "not recorded (an older neuronpath wrote this file)".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathRecord {
    /// Path relative to `--images`.
    pub image: String,
    /// Ground-truth class from the folder, when known.
    pub label: Option<usize>,
    pub label_name: Option<String>,
    pub method: Method,
    /// Per layer, input to output: the path neuron (a flat list), or a top-K
    /// path's K neurons in the order found (a list of lists).
    pub path: NeuronPath,
    /// The beam width of the run that found the path (JAS paths are searched with
    /// it); absent: 1 (greedy).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub beam: usize,
    /// The path's place among the image's paths of this method, best first
    /// (`--paths-per-image`); absent: 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rank: usize,
    /// Neurons per layer in the model (the CLS FFN width), the range of `path`.
    pub neurons: usize,
    /// The model's number of classes, the range of `label`, `target` and
    /// `predicted` (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Joint Attribution Score of the path.
    pub score: f64,
    /// The class explained, and why that one ("label" or "predicted").
    pub target: usize,
    pub target_source: Target,
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
    pub integration: Rule,
    pub steps: usize,
    pub score_form: ScoreForm,
    pub model: String,
    /// Input normalisation preset.
    pub preprocess: Preset,
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
    /// [`crate::model::fingerprint`] of the model the path was found on (absent in
    /// older files).
    #[serde(default)]
    pub model_fingerprint: Option<String>,
    /// [`crate::numeric::fingerprint`] of the image file's bytes (absent in older files).
    #[serde(default)]
    pub image_fingerprint: Option<String>,
    /// Seed of the `random` method (absent in older files).
    #[serde(default)]
    pub seed: Option<u64>,
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
    pub fn key_of(image: &str, method: Method) -> String {
        format!("{image}\t{method}")
    }

    /// Identifies the record's content (a manipulation names the path it edited).
    pub fn fingerprint(&self) -> String {
        crate::numeric::fingerprint(&serde_json::to_vec(self).unwrap_or_default())
    }
}

impl Record for PathRecord {
    const KIND: &'static str = "path";
    const SHARED: &'static [&'static str] = &[
        "model fingerprint",
        "unit",
        "top-k",
        "integration",
        "steps",
        "score form",
        "target",
        "preprocessing",
        "compat",
        "seed",
        "beam",
    ];

    fn key(&self) -> String {
        match self.rank {
            0 => PathRecord::key_of(&self.image, self.method),
            rank => format!("{}\t#{rank}", PathRecord::key_of(&self.image, self.method)),
        }
    }

    fn settings(&self) -> Vec<Setting> {
        vec![
            (
                "model fingerprint",
                self.model_fingerprint.clone().unwrap_or_else(unrecorded),
            ),
            (
                "unit",
                self.sites
                    .first()
                    .map_or("blocks.0.mlp.post@cls".into(), |s| s.to_string()),
            ),
            ("top-k", self.path.0.first().map_or(1, Vec::len).to_string()),
            ("integration", self.integration.name().into()),
            ("steps", self.steps.to_string()),
            ("score form", self.score_form.name().into()),
            ("target", self.target_source.name().into()),
            ("preprocessing", self.preprocess.name().into()),
            ("compat", self.compat.name().into()),
            ("seed", self.seed.map_or_else(unrecorded, |s| s.to_string())),
            ("beam", self.beam.to_string()),
        ]
    }

    fn check(&self) -> Result<()> {
        check::record(self)
    }
}

impl Shardable for PathRecord {
    fn image(&self) -> Option<&str> {
        Some(&self.image)
    }
}

/// The path records of a file, each image's best path per method only (rank 0):
/// what the experiments and the report take from a file holding several paths per
/// image (`--paths-per-image`).
pub fn read_paths(path: &Path) -> Result<Vec<PathRecord>> {
    let records: Vec<PathRecord> = read_records(path)?;
    Ok(records.into_iter().filter(|r| r.rank == 0).collect())
}

/// Whether another run holds `path` locked (is still writing it): what is read
/// now may not be all it will hold.
pub fn being_written(path: &Path) -> bool {
    let Ok(file) = crate::files::open(path) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// An output file opened for appending, locked, with what it already holds.
pub struct RecordFile<T> {
    path: PathBuf,
    file: File,
    done: HashMap<String, T>,
    records: PhantomData<T>,
}

impl<T: Record> RecordFile<T> {
    /// Opens (or creates) `path` for a run with `settings` and locks it. Refused,
    /// with the file untouched: a file another run holds, a line that is not a
    /// record of this kind, a record made with other settings. A torn last line
    /// after this kind's records (a killed run) is cut off.
    pub fn open(path: &Path, settings: &[Setting]) -> Result<RecordFile<T>> {
        create_parent(path)?;
        let mut file = crate::files::open_with(
            path,
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true),
        )
        .with_context(|| format!("{}: cannot open for writing", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "{}: another neuronpath run is writing this file; let it finish, or write to another file",
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("{}: cannot lock", path.display()))
            }
        }
        let held = Held::<T>::scan(path, settings)?;
        file.set_len(held.keep)
            .with_context(|| format!("{}: cannot cut the torn last line", path.display()))?;
        file.seek(SeekFrom::End(0))?;
        if held.unterminated {
            file.write_all(b"\n")
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        Ok(RecordFile {
            path: path.to_path_buf(),
            file,
            done: held.records,
            records: PhantomData,
        })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.done.contains_key(key)
    }

    /// The record of `key` already in the file.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.done.get(key)
    }

    pub fn append(&mut self, record: T) -> Result<()> {
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("{}: cannot write", self.path.display()))?;
        self.file.flush()?;
        self.done.insert(record.key(), record);
        Ok(())
    }
}

/// What an existing file holds: its records, the length to keep, and whether its
/// last record lacks the newline.
struct Held<T> {
    records: HashMap<String, T>,
    keep: u64,
    unterminated: bool,
}

impl<T: Record> Held<T> {
    /// The records of `path` (read line by line), checked as every reader checks
    /// them and against the run's `settings`.
    fn scan(path: &Path, settings: &[Setting]) -> Result<Held<T>> {
        let mut held = Held {
            records: HashMap::new(),
            keep: 0,
            unterminated: false,
        };
        let mut file = FileCheck::new(path);
        for (i, line) in crate::files::lines(path)?.enumerate() {
            let line = line?;
            let at = || format!("{}: line {}", path.display(), i + 1);
            let record = if line.bytes.trim_ascii().is_empty() {
                None
            } else {
                match serde_json::from_slice::<T>(&line.bytes) {
                    Ok(record) => Some(record),
                    Err(_) if !line.terminated && held.is_torn(&line.bytes) => break,
                    Err(e) => bail!(
                        "{}: not a {} record ({e}); this file was not written by this command, or was edited. Nothing was changed: write to another file",
                        at(),
                        T::KIND
                    ),
                }
            };
            if let Some(record) = record {
                file.add(&record, i + 1)?;
                check_settings(&record.settings(), settings).with_context(at)?;
                held.records.insert(record.key(), record);
            }
            held.keep += line.bytes.len() as u64 + u64::from(line.terminated);
            held.unterminated = !line.terminated;
        }
        Ok(held)
    }

    /// A line a killed run may have left: no complete JSON, after this kind's
    /// records, or alone and the start of one (every record begins with its image).
    fn is_torn(&self, line: &[u8]) -> bool {
        let start_field = format!("{{\"{}\":", T::FIRST_FIELD);
        let start = &line[..line.len().min(start_field.len())];
        serde_json::from_slice::<serde_json::Value>(line).is_err()
            && (!self.records.is_empty()
                || (self.keep == 0 && start_field.as_bytes().starts_with(start)))
    }
}

/// An error naming the first setting of an existing record that differs from the run's.
fn check_settings(had: &[Setting], want: &[Setting]) -> Result<()> {
    for (name, value) in want {
        if let Some((_, old)) = had.iter().find(|(n, old)| n == name && old != value) {
            bail!(
                "made with {name} {old}, but this run has {name} {value}; adding to it would mix results. Nothing was changed: write to another file (or move this one away) to start afresh"
            );
        }
    }
    Ok(())
}

/// Every record of a JSON-lines file (for the experiments and the report); an
/// error names the file and line of a record that does not parse, and a file
/// with no record at all.
pub fn read_records<T: Record>(path: &Path) -> Result<Vec<T>> {
    let records = read_all::<T>(path)?;
    if records.is_empty() {
        bail!("{}: no records in the file", path.display());
    }
    Ok(records)
}

/// Every record of a JSON-lines file, none for an empty one; an error names the
/// file and line of a record that does not parse.
pub fn read_all<T: Record>(path: &Path) -> Result<Vec<T>> {
    let mut records = Vec::new();
    read_each(path, |record, _| {
        records.push(record);
        Ok(())
    })?;
    Ok(records)
}

/// Calls `f` with each record of a JSON-lines file and its line as written
/// (blank lines are passed over), read line by line; an error names the file and
/// line of a record that does not parse, that [`Record::check`] refuses, that
/// repeats an earlier record's key, or whose [`Record::SHARED`] settings are not
/// the first record's (a file mixing models or runs).
pub fn read_each<T: Record>(path: &Path, mut f: impl FnMut(T, &str) -> Result<()>) -> Result<()> {
    let mut file = FileCheck::new(path);
    for (i, line) in crate::files::lines(path)?.enumerate() {
        let line = line?;
        let at = || format!("{}: line {}", path.display(), i + 1);
        let text = std::str::from_utf8(&line.bytes)
            .with_context(|| format!("{}: not UTF-8 text", at()))?;
        if text.trim().is_empty() {
            continue;
        }
        let record: T = serde_json::from_str(text)
            .with_context(|| format!("{}: not a {} record", at(), T::KIND))?;
        file.add(&record, i + 1)?;
        f(record, text)?;
    }
    Ok(())
}

/// What the records of one file read so far must agree with: the first one's
/// shared settings, and no key twice.
struct FileCheck<'a> {
    path: &'a Path,
    first: Option<(usize, Vec<Setting>)>,
    lines: HashMap<String, usize>,
}

impl<'a> FileCheck<'a> {
    fn new(path: &'a Path) -> FileCheck<'a> {
        FileCheck {
            path,
            first: None,
            lines: HashMap::new(),
        }
    }

    /// Checks `record`, read at `line`, on its own and against those before it.
    fn add<T: Record>(&mut self, record: &T, line: usize) -> Result<()> {
        let at = || format!("{}: line {line}", self.path.display());
        record.check().with_context(at)?;
        let shared: Vec<Setting> = (record.settings().into_iter())
            .filter(|(name, _)| T::SHARED.contains(name))
            .collect();
        match &self.first {
            None => self.first = Some((line, shared)),
            Some((first, want)) => {
                if let Some((name, value)) = shared.iter().find(|s| !want.contains(s)) {
                    let old = want
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or("-", |(_, v)| v.as_str());
                    bail!(
                        "{}: made with {name} {value}, but the record on line {first} with {name} {old}: the file mixes runs (or models); it was edited or two files were joined",
                        at()
                    );
                }
            }
        }
        if let Some(first) = self.lines.insert(record.key(), line) {
            bail!(
                "{}: a second {} record of {:?} (the first is on line {first}); the file was edited or two runs were joined: remove one",
                at(),
                T::KIND,
                record.key().replace('\t', " ")
            );
        }
        Ok(())
    }
}

/// The preprocessing preset the paths were found with (all records must agree).
pub fn preprocess_of(records: &[PathRecord], file: &Path) -> Result<Preset> {
    let Some(first) = records.first() else {
        bail!("{}: no path records", file.display());
    };
    let preset = first.preprocess;
    if let Some(r) = records.iter().find(|r| r.preprocess != preset) {
        bail!(
            "{}: paths found with different preprocessing ({} and {}, e.g. {})",
            file.display(),
            preset.name(),
            r.preprocess.name(),
            r.image
        );
    }
    Ok(preset)
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

/// The unit of the paths and the tokens it lives at (all records must agree; none
/// for older files, which predate sites).
pub fn unit_of(records: &[PathRecord], file: &Path) -> Result<Option<(Activation, Tokens)>> {
    let tokens = |r: &PathRecord| r.sites.first().map(|s| (s.activation, s.tokens));
    let Some(first) = records.first() else {
        bail!("{}: no path records", file.display());
    };
    if let Some(r) = records.iter().find(|r| tokens(r) != tokens(first)) {
        bail!(
            "{}: paths of units at different sites (e.g. {} and {})",
            file.display(),
            first.image,
            r.image
        );
    }
    Ok(tokens(first))
}

/// Sets `vit` up as the paths of `records` (read from `file`) were found: the same
/// arithmetic and neuron tokens (older files, without sites: the family's
/// neurons); returns the preprocessing they were found with.
pub fn as_found(vit: &mut Vit, records: &[PathRecord], file: &Path) -> Result<Normalization> {
    vit.compat = compat_of(records, file)?;
    if let Some((unit, tokens)) = unit_of(records, file)? {
        if vit.config.rows(tokens).is_empty() {
            bail!(
                "{}: paths of neurons at the {} token, which this model has not",
                file.display(),
                tokens.name()
            );
        }
        vit.neuron_tokens = tokens;
        vit.unit = unit;
    } else {
        vit.neuron_tokens = vit.config.family.neuron_tokens();
        vit.unit = crate::model::Activation::MlpPost;
    }
    let preset = preprocess_of(records, file)?;
    Ok(crate::data::normalization(vit, preset))
}

/// Creates the folder `path` will be written in, when missing.
fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    Ok(())
}

/// Checks that `path` may be (over)written with an output whose text holds `marker`
/// near its start: it does not exist, is empty, or is such an output already. Any
/// other file (the paths, a text file) is refused untouched.
pub fn check_output(path: &Path, marker: &str) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut start = Vec::new();
    crate::files::open(path)?
        .take(4096)
        .read_to_end(&mut start)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let ours = start.windows(marker.len()).any(|w| w == marker.as_bytes());
    if !(start.is_empty() || ours) {
        bail!(
            "{}: exists and is not an output of this command; nothing was changed: write to another file",
            path.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside it,
/// flushed to disk and renamed over it (a reader, a kill or a full disk never
/// leaves half a file); on failure the temporary file is removed and `path` is
/// as it was.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("{}: cannot write (left as it was)", path.display()));
    }
    Ok(())
}

/// Writes a whole output file (stats, pruning results, the report) whose text holds
/// `marker` near its start, creating its folder; see [`check_output`] and
/// [`write_whole`].
pub fn write_output(path: &Path, bytes: &[u8], marker: &str) -> Result<()> {
    check_output(path, marker)?;
    create_parent(path)?;
    write_whole(path, bytes)
}
