//! Shard files into the file one run writes: the shards must make one whole run
//! (the same kind, settings and images; every shard present, once, and finished),
//! every image in exactly one shard, and the records are written in run order.

use super::{fmt_shard, manifest_path, now, Kind, Manifest};
use crate::record::{read_each, Shardable};
use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The shard files of one run, with their manifests, checked to make it whole.
pub struct Parts {
    parts: Vec<(PathBuf, Manifest)>,
}

/// What [`merge`] wrote.
pub struct Merged {
    pub shards: usize,
    pub records: usize,
    pub images: usize,
    /// Images that failed in their shard (absent, as from a single run's file).
    pub failed: Vec<String>,
}

/// At most ten of `keys`, then how many more.
pub fn listing<S: AsRef<str>>(keys: &[S]) -> String {
    let shown: Vec<&str> = keys.iter().take(10).map(AsRef::as_ref).collect();
    match keys.len().saturating_sub(10) {
        0 => shown.join(", "),
        more => format!("{}, and {more} more", shown.join(", ")),
    }
}

impl Parts {
    /// The shard files `files` (each with its `<file>.shard.json`); an error names
    /// a file that is not a finished shard, a shard given twice or missing (with its
    /// images), and a setting, the kind or the image list where the shards differ.
    pub fn read(files: &[PathBuf]) -> Result<Parts> {
        let mut parts = Vec::new();
        for file in files {
            let manifest = Manifest::read(file)?.with_context(|| {
                format!(
                    "{}: no shard manifest {} beside it: not the output of a run with --shard",
                    file.display(),
                    manifest_path(file).display()
                )
            })?;
            if manifest.shard.is_none() {
                bail!("{}: a merged output, not a shard", file.display());
            }
            parts.push((file.clone(), manifest));
        }
        let Some((first_file, first)) = parts.first() else {
            bail!("no shard files to merge");
        };
        for (file, m) in &parts[1..] {
            let what = format!("{} (shard {})", file.display(), fmt_shard(m));
            let them = format!("{} (shard {}) has", first_file.display(), fmt_shard(first));
            first.check_same_run(m, &what, &them)?;
        }
        let parts = Parts { parts };
        parts.check_complete()?;
        Ok(parts)
    }

    /// The kind of records the shards hold.
    pub fn kind(&self) -> Kind {
        self.parts[0].1.kind
    }

    fn first(&self) -> &Manifest {
        &self.parts[0].1
    }

    /// An error unless every shard of the run is there once, finished.
    fn check_complete(&self) -> Result<()> {
        let count = self.first().shard.map_or(1, |s| s.count());
        let mut by_index: Vec<Option<&Path>> = vec![None; count];
        let mut unfinished = Vec::new();
        for (file, m) in &self.parts {
            let shard = m.shard.unwrap_or(crate::data::Shard::WHOLE);
            if shard.count() != count {
                bail!(
                    "{}: shard {shard} of a run in {} shards, but {} is of a run in {count}",
                    file.display(),
                    shard.count(),
                    self.parts[0].0.display()
                );
            }
            if let Some(other) = by_index[shard.index()].replace(file) {
                bail!(
                    "shard {shard} given twice: {} and {}",
                    other.display(),
                    file.display()
                );
            }
            if m.finished.is_none() {
                unfinished.push(format!(
                    "{}: shard {shard} has not finished: {}",
                    file.display(),
                    m.unfinished()
                ));
            }
        }
        if !unfinished.is_empty() {
            bail!("{}; then merge", unfinished.join("; "));
        }
        let missing: Vec<String> = (0..count)
            .filter(|&i| by_index[i].is_none())
            .map(|i| self.missing_shard(i, count))
            .collect();
        if !missing.is_empty() {
            bail!("{}; run them, then merge", listing(&missing));
        }
        Ok(())
    }

    /// "shard I/N is missing (its images: ...)".
    fn missing_shard(&self, index: usize, count: usize) -> String {
        let shard = crate::data::Shard::new(index, count).unwrap_or(crate::data::Shard::WHOLE);
        let mine = shard.pick(self.first().images.iter().map(String::as_str));
        let keys: Vec<&String> = self
            .first()
            .images
            .iter()
            .filter(|k| mine.contains(k.as_str()))
            .collect();
        format!(
            "shard {shard} is missing (its {} images: {})",
            keys.len(),
            listing(&keys)
        )
    }
}

/// Merges the shard files into `out`, the file a single run writes (the same
/// records, in run order), beside its manifest (which lets a later merge replace
/// it). `out` must not exist, be empty, or be an earlier merge's output.
pub fn merge<T: Shardable>(parts: &Parts, out: &Path) -> Result<Merged> {
    check_output(out)?;
    let run = parts.first();
    let position: HashMap<&str, usize> = run
        .images
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut per_image: Vec<(usize, String)> = Vec::new();
    let mut summary = Summary {
        records: Vec::new(),
        at: HashMap::new(),
    };
    let mut covered: HashSet<String> = HashSet::new();
    let mut keys: HashSet<String> = HashSet::new();
    let mut duplicated = Vec::new();
    for (file, m) in &parts.parts {
        let mine = m.mine();
        read_each(file, |record: T, line| {
            let Some(image) = record.image() else {
                return summary.add(record);
            };
            match position.get(image) {
                None => bail!(
                    "{}: {image} is not an image of this run; the file was edited",
                    file.display()
                ),
                Some(_) if !mine.contains(image) => {
                    duplicated.push(format!("{image} (in {}, not its shard)", file.display()))
                }
                Some(_) if !keys.insert(record.key()) => {
                    duplicated.push(format!("{image} (twice in {})", file.display()))
                }
                Some(&at) => {
                    covered.insert(image.to_string());
                    per_image.push((at, line.to_string()));
                }
            }
            Ok(())
        })?;
    }
    if !duplicated.is_empty() {
        bail!(
            "images duplicated in the shard files: {}; a file was edited or mixed up",
            listing(&duplicated)
        );
    }
    let failed = check_covered(parts, &covered, T::PER_IMAGE)?;
    // Per-image records keep their lines as the shards wrote them (the same bytes
    // as one run's), in run order.
    per_image.sort_by_key(|(at, _)| *at);
    let mut lines: Vec<String> = per_image.into_iter().map(|(_, line)| line).collect();
    for record in summary.records.into_iter().flatten() {
        lines.push(serde_json::to_string(&record)?);
    }
    write(parts, out, &lines, &failed)?;
    Ok(Merged {
        shards: parts.parts.len(),
        records: lines.len(),
        images: covered.len(),
        failed,
    })
}

/// Records that sum up many images, one per key in first-seen order, those of a
/// key combined across shards.
struct Summary<T> {
    records: Vec<Option<T>>,
    at: HashMap<String, usize>,
}

impl<T: Shardable> Summary<T> {
    fn add(&mut self, record: T) -> Result<()> {
        match self.at.get(&record.key()) {
            Some(&i) => {
                let old = self.records[i]
                    .take()
                    .context("a summary record combined")?;
                self.records[i] = Some(old.combine(record)?);
            }
            None => {
                self.at.insert(record.key(), self.records.len());
                self.records.push(Some(record));
            }
        }
        Ok(())
    }
}

/// The images that failed in their shards; an error lists images with no record
/// that did not fail (when records are per image).
fn check_covered(parts: &Parts, covered: &HashSet<String>, per_image: bool) -> Result<Vec<String>> {
    let failed: Vec<String> = parts
        .parts
        .iter()
        .flat_map(|(_, m)| m.failed.iter().cloned())
        .collect();
    if per_image {
        let known: HashSet<&String> = failed.iter().chain(covered).collect();
        let missing: Vec<&String> = parts
            .first()
            .images
            .iter()
            .filter(|k| !known.contains(k))
            .collect();
        if !missing.is_empty() {
            bail!("images with no record in their shard file (which finished): {}; the file was edited; rerun that shard", listing(&missing));
        }
    }
    Ok(failed)
}

/// An error unless `out` may be (over)written by a merge: it does not exist, is
/// empty (with no manifest), or an earlier merge wrote it.
fn check_output(out: &Path) -> Result<()> {
    let manifest = Manifest::read(out)?;
    if out.exists() && !out.is_file() {
        bail!("{}: not a regular file", out.display());
    }
    let empty = std::fs::metadata(out).map_or(true, |m| m.len() == 0);
    match manifest {
        Some(m) if m.shard.is_some() => bail!(
            "{}: the output of shard {}, not of a merge; nothing was changed: write to another file",
            out.display(),
            fmt_shard(&m)
        ),
        Some(_) => Ok(()),
        None if empty => Ok(()),
        None => bail!(
            "{}: exists and is not an earlier merge's output; nothing was changed: write to another file",
            out.display()
        ),
    }
}

/// Writes the merged manifest, then the records (a temporary file, renamed).
fn write(parts: &Parts, out: &Path, lines: &[String], failed: &[String]) -> Result<()> {
    let run = parts.first();
    let manifest = Manifest {
        shard: None,
        started: now(),
        done_at_start: 0,
        finished: Some(now()),
        failed: failed.to_vec(),
        launch: None,
        stopped: None,
        merged_from: parts
            .parts
            .iter()
            .map(|(f, _)| f.display().to_string())
            .collect(),
        ..run.clone()
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    manifest.write(out)?;
    let bytes: String = lines.iter().map(|l| format!("{l}\n")).collect();
    crate::record::write_whole(out, bytes.as_bytes())
}
