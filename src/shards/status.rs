//! How far a sharded run has got: per shard, images done (while it runs, read from
//! the `image` of its output's records, without taking its lock), failures, the
//! rate of its latest session and an ETA.

use super::{manifest_path, now, Kind, Launch, Manifest, Stopped};
use crate::data::Shard;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One shard of a run.
pub struct ShardStatus {
    pub file: PathBuf,
    pub shard: Shard,
    /// The shard's images, those with records in its output, and those that failed
    /// (known once it finished).
    pub total: usize,
    pub done: usize,
    pub failed: Option<usize>,
    pub finished: bool,
    /// Seconds since the output (or manifest) was last written.
    pub idle: Option<u64>,
    /// Images per second in the latest session, and the seconds left at that rate.
    pub rate: Option<f64>,
    pub eta: Option<f64>,
    /// Why its latest session stopped before it finished, if it said.
    pub stopped: Option<Stopped>,
    /// How that session was started: the command that resumes it, its Slurm job.
    pub launch: Option<Launch>,
}

/// The shards of one run found in a folder, and those not there.
pub struct RunStatus {
    pub kind: Kind,
    pub count: usize,
    pub shards: Vec<ShardStatus>,
    /// Shards with no manifest in the folder (not started), with their image counts.
    pub missing: Vec<(Shard, usize)>,
}

impl RunStatus {
    /// `(done, total, failed)` over the whole run.
    pub fn totals(&self) -> (usize, usize, usize) {
        let total = self.shards.iter().map(|s| s.total).sum::<usize>()
            + self.missing.iter().map(|(_, n)| n).sum::<usize>();
        let done = self.shards.iter().map(|s| s.done).sum();
        let failed = self.shards.iter().filter_map(|s| s.failed).sum();
        (done, total, failed)
    }

    /// Seconds until the slowest unfinished shard is done (the shards run side by
    /// side); none while a shard is missing, stopped or has no rate yet.
    pub fn eta(&self) -> Option<f64> {
        if !self.missing.is_empty() {
            return None;
        }
        self.shards
            .iter()
            .filter(|s| !s.finished)
            .map(|s| s.eta)
            .try_fold(0f64, |max, eta| eta.map(|e| max.max(e)))
    }
}

/// Every sharded run whose manifests lie in `dir` (not below it), grouped by run.
pub fn status(dir: &Path) -> Result<Vec<RunStatus>> {
    let mut runs: Vec<(Manifest, RunStatus)> = Vec::new();
    for (out, manifest) in manifests(dir)? {
        let Some(shard) = manifest.shard else {
            continue; // a merged output
        };
        let status = shard_status(&out, &manifest, shard)?;
        let same = |m: &Manifest| {
            m.kind == manifest.kind
                && m.shard.map(Shard::count) == Some(shard.count())
                && m.settings == manifest.settings
                && m.images == manifest.images
        };
        match runs.iter_mut().find(|(m, _)| same(m)) {
            Some((_, run)) => run.shards.push(status),
            None => {
                let run = RunStatus {
                    kind: manifest.kind,
                    count: shard.count(),
                    shards: vec![status],
                    missing: vec![],
                };
                runs.push((manifest, run));
            }
        }
    }
    Ok(runs
        .into_iter()
        .map(|(m, run)| with_missing(&m, run))
        .collect())
}

/// `run` with its shards in order, and those without a manifest listed.
fn with_missing(manifest: &Manifest, mut run: RunStatus) -> RunStatus {
    run.shards.sort_by_key(|s| s.shard.index());
    let present: HashSet<usize> = run.shards.iter().map(|s| s.shard.index()).collect();
    let keys = || manifest.images.iter().map(String::as_str);
    run.missing = (0..run.count)
        .filter(|i| !present.contains(i))
        .filter_map(|i| Shard::new(i, run.count).ok())
        .map(|s| (s, s.pick(keys()).len()))
        .collect();
    run
}

/// The outputs of `dir` that have a manifest, with it, sorted by name.
fn manifests(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>> {
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str());
        let Some(out) = name.and_then(|n| n.strip_suffix(".shard.json")) else {
            continue;
        };
        let out = path.with_file_name(out);
        if let Some(manifest) = Manifest::read(&out)? {
            found.push((out, manifest));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

fn shard_status(out: &Path, m: &Manifest, shard: Shard) -> Result<ShardStatus> {
    let mine = m.mine();
    // A finished shard did every image but those that failed; a running one has
    // done those with records so far (a neuron scan: those its state has saved).
    let state = crate::roles::run::state_file(out);
    let done = match (m.finished, m.kind) {
        (Some(_), _) => mine.len().saturating_sub(m.failed.len()),
        (None, Kind::Neurons) => crate::roles::run::scanned(out).unwrap_or(0),
        (None, _) => images_written(out, &mine)?,
    };
    let modified = |p: &Path| {
        let time = std::fs::metadata(p).and_then(|m| m.modified()).ok()?;
        time.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    };
    let updated = modified(out)
        .max(modified(&manifest_path(out)))
        .max(modified(&state));
    let finished = m.finished.is_some();
    let gained = done.saturating_sub(m.done_at_start) as f64;
    let rate = updated
        .map(|u| u.saturating_sub(m.started) as f64)
        .filter(|&secs| !finished && secs > 0.0 && gained > 0.0)
        .map(|secs| gained / secs);
    let left = mine.len().saturating_sub(done) as f64;
    let stopped = m.stopped.clone().filter(|_| !finished);
    Ok(ShardStatus {
        file: out.to_path_buf(),
        shard,
        total: mine.len(),
        done,
        failed: finished.then_some(m.failed.len()),
        finished,
        idle: updated.map(|u| now().saturating_sub(u)),
        eta: match (finished, &stopped) {
            (true, _) => Some(0.0),
            (false, Some(_)) => None,
            (false, None) => rate.map(|r| left / r),
        },
        rate,
        stopped,
        launch: m.launch.clone(),
    })
}

/// How many of `mine` have a record in `out` (none when it does not exist yet);
/// a line that is not a record (torn by a kill) is passed over.
fn images_written(out: &Path, mine: &HashSet<&str>) -> Result<usize> {
    #[derive(Deserialize)]
    struct Line {
        image: Option<String>,
    }
    if !out.exists() {
        return Ok(0);
    }
    let mut seen = HashSet::new();
    for line in crate::files::lines(out)? {
        if let Ok(Line { image: Some(image) }) = serde_json::from_slice(&line?.bytes) {
            if mine.contains(image.as_str()) {
                seen.insert(image);
            }
        }
    }
    Ok(seen.len())
}
