//! Runs split into shards (`--shard I/N`, one process each, as a Slurm job array),
//! merged into the file a single run writes, and watched while they run.
//!
//! Each shard writes its records to its own output, as a single run does (locked,
//! resumable), and beside it a manifest, `<output>.shard.json`: the shard,
//! the image keys of the whole run (so that a missing shard's images can be named),
//! the settings the shards must agree on, and when this session of it started and
//! finished, or why it stopped before that (an error, or a termination signal such
//! as Slurm's on `scancel`, a time limit or a requeue) with the command that resumes
//! it. The manifest is written whole (a temporary file renamed), read without a lock
//! by `status`, and never replaces a file that is not a manifest.

pub mod merge;
pub mod status;

pub use merge::{merge, Merged, Parts};
pub use status::{status, RunStatus, ShardStatus};

use crate::data::Shard;
use crate::record::Setting;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The command whose records a shard holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Paths,
    Manipulate,
    Neurons,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Paths => "paths",
            Kind::Manipulate => "manipulate",
            Kind::Neurons => "neurons",
        }
    }
}

/// What `<output>.shard.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub kind: Kind,
    /// This shard; none for the output of `merge`, which is the whole run.
    pub shard: Option<Shard>,
    /// Every image key of the whole run, in run order (the shard's are
    /// [`Shard::pick`] of them).
    pub images: Vec<String>,
    /// What every shard of the run must have been run with, as `(name, value)`.
    pub settings: Vec<(String, String)>,
    /// When the latest session of this shard started (seconds since 1970).
    pub started: u64,
    /// The shard's images already done when it started.
    pub done_at_start: usize,
    /// When it finished (every image of the shard tried); none while running, or
    /// when it was stopped.
    pub finished: Option<u64>,
    /// The shard's images that failed (no record after it finished).
    pub failed: Vec<String>,
    /// How the latest session was started (none for a merged output, or a manifest
    /// of an earlier version).
    pub launch: Option<Launch>,
    /// Why the latest session stopped before it finished; none while it runs, once
    /// it finished, or when it was killed outright (SIGKILL, a lost node).
    pub stopped: Option<Stopped>,
    /// The shard files a merged output was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

/// How a shard's session was started: what `status` and `merge` tell the user to
/// run when it stopped before it finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Launch {
    /// A shell command that resumes the shard, wherever it is run.
    pub resume: String,
    /// The Slurm job the session ran as (`<array job>_<task>`, or the job's id).
    pub slurm_job: Option<String>,
}

impl Launch {
    /// " (Slurm job J)" when the session ran as one, else nothing.
    pub fn job(&self) -> String {
        self.slurm_job
            .as_ref()
            .map_or(String::new(), |j| format!(" (Slurm job {j})"))
    }
}

/// When and why a shard's session stopped before it finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stopped {
    /// Seconds since 1970.
    pub at: u64,
    #[serde(flatten)]
    pub why: Stop,
}

/// Why a shard's session stopped before it finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "lowercase")]
pub enum Stop {
    /// The run failed with this error.
    Error { message: String },
    /// A termination signal ended it.
    Signal { signal: Signal },
}

/// The termination signals a shard records before it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Signal {
    /// `kill`, Slurm's `scancel`, time limit, preemption or requeue.
    Sigterm,
    /// Ctrl-C.
    Sigint,
    /// The terminal closed.
    Sighup,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Stop::Error { message } => write!(f, "error: {message}"),
            Stop::Signal { signal } => {
                let (name, cause) = match signal {
                    Signal::Sigterm => (
                        "SIGTERM",
                        "kill, or Slurm's scancel, time limit, preemption or requeue",
                    ),
                    Signal::Sigint => ("SIGINT", "Ctrl-C"),
                    Signal::Sighup => ("SIGHUP", "its terminal closed"),
                };
                write!(f, "terminated by {name} ({cause})")
            }
        }
    }
}

/// Seconds since 1970, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The manifest path of the output `out`: `<out>.shard.json`.
pub fn manifest_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".shard.json");
    PathBuf::from(name)
}

impl Manifest {
    /// The manifest beside `out`; none when there is none; an error naming the
    /// file when it is something else.
    pub fn read(out: &Path) -> Result<Option<Manifest>> {
        let path = manifest_path(out);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = crate::files::read(&path, crate::files::TEXT)?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a neuronpath shard manifest ({e}); nothing was changed: move it away",
                path.display()
            )
        })
    }

    /// Writes the manifest beside `out` whole: a temporary file, renamed.
    pub fn write(&self, out: &Path) -> Result<()> {
        crate::record::write_whole(&manifest_path(out), &serde_json::to_vec_pretty(self)?)
    }

    /// This shard's image keys (all of them for a merged output).
    pub fn mine(&self) -> HashSet<&str> {
        self.shard
            .unwrap_or(Shard::WHOLE)
            .pick(self.images.iter().map(String::as_str))
    }

    /// An error naming the first setting where `other` (described by `what`)
    /// differs from `self` (described by `them`: "this run has").
    pub fn check_same_run(&self, other: &Manifest, what: &str, them: &str) -> Result<()> {
        if self.kind != other.kind {
            bail!(
                "{what}: {} records, not {}",
                other.kind.name(),
                self.kind.name()
            );
        }
        let differs = |a: &[(String, String)], b: &[(String, String)]| {
            a.iter().find_map(|(n, v)| {
                b.iter()
                    .find(|(m, w)| m == n && w != v)
                    .map(|(_, w)| (n.clone(), v.clone(), w.clone()))
            })
        };
        let diff = differs(&self.settings, &other.settings)
            .or_else(|| differs(&other.settings, &self.settings).map(|(n, v, w)| (n, w, v)));
        if let Some((name, mine, theirs)) = diff {
            bail!("{what}: made with {name} {theirs}, but {them} {name} {mine}");
        }
        if self.images != other.images {
            bail!(
                "{what}: a run over other images ({} images, but {them} {}): another --images or --paths",
                other.images.len(),
                self.images.len()
            );
        }
        Ok(())
    }

    /// Why the shard has not finished, and the command that resumes it (when known),
    /// in a sentence.
    pub fn unfinished(&self) -> String {
        let why = match &self.stopped {
            Some(stopped) => format!("it stopped: {}", stopped.why),
            None => "it is still running, or was killed outright".to_string(),
        };
        let job = self.launch.as_ref().map_or(String::new(), Launch::job);
        let resume = self
            .launch
            .as_ref()
            .map_or("rerun its command to resume it".to_string(), |l| {
                format!("resume it with: {}", l.resume)
            });
        format!("{why}{job}; {resume}")
    }
}

/// Which images of a run are this shard's (all of them without `--shard`),
/// decided before anything is read or written.
pub struct ShardPlan {
    shard: Option<Shard>,
    images: Vec<String>,
    mine: HashSet<String>,
    launch: Option<Launch>,
}

impl ShardPlan {
    /// `shard` of a run over `images` (every key of the whole run, in run order),
    /// started as `launch` says (recorded in its manifest).
    pub fn new(shard: Option<Shard>, images: Vec<String>, launch: Option<Launch>) -> ShardPlan {
        let keys = images.iter().map(String::as_str);
        let mine = shard.unwrap_or(Shard::WHOLE).pick(keys);
        let mine = mine.into_iter().map(String::from).collect();
        ShardPlan {
            shard,
            images,
            mine,
            launch,
        }
    }

    /// Whether the image `key` is this shard's.
    pub fn mine(&self, key: &str) -> bool {
        self.mine.contains(key)
    }

    /// Starts (or resumes) the shard of a `kind` run with `settings` writing to
    /// `out`, whose records are already written for the images where `done` is
    /// true: writes its manifest. Call it once `out` is open (and locked). Refused:
    /// a manifest of another shard, kind, image list or settings; the output of a
    /// shard resumed without `--shard`; records of an unsharded run.
    pub fn begin(
        self,
        out: &Path,
        kind: Kind,
        settings: &[Setting],
        done: impl Fn(&str) -> bool,
    ) -> Result<ShardRun> {
        let old = Manifest::read(out)?;
        let Some(shard) = self.shard else {
            if let Some(old) = old.filter(|m| m.shard.is_some()) {
                let shard = fmt_shard(&old);
                bail!(
                    "{}: the output of shard {shard} of a run; pass --shard {shard} to resume it, or write to another file",
                    out.display()
                );
            }
            return Ok(ShardRun::new(out, None, self.mine));
        };
        let settings = settings
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let manifest = Manifest {
            kind,
            shard: Some(shard),
            images: self.images,
            settings,
            started: now(),
            done_at_start: self.mine.iter().filter(|k| done(k)).count(),
            finished: None,
            failed: vec![],
            launch: self.launch,
            stopped: None,
            merged_from: vec![],
        };
        match old {
            Some(old) => check_resumable(&old, &manifest, out)?,
            None if std::fs::metadata(out).is_ok_and(|m| m.len() > 0) => bail!(
                "{}: holds records of a run without --shard (there is no {} beside it); a shard writes to a file of its own",
                out.display(),
                manifest_path(out).display()
            ),
            None => {}
        }
        manifest.write(out)?;
        Ok(ShardRun::new(out, Some(manifest), self.mine))
    }
}

/// A shard under way: its manifest, finished when the run is, or marked stopped
/// (through a [`Stopper`]) when it ends before that.
pub struct ShardRun {
    session: Arc<Mutex<Session>>,
}

/// What a shard under way writes to its manifest; one writer at a time.
struct Session {
    out: PathBuf,
    manifest: Option<Manifest>,
    mine: HashSet<String>,
}

/// Marks a shard under way stopped, from any thread (a signal's, say).
#[derive(Clone)]
pub struct Stopper {
    session: Arc<Mutex<Session>>,
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ShardRun {
    fn new(out: &Path, manifest: Option<Manifest>, mine: HashSet<String>) -> ShardRun {
        let session = Session {
            out: out.into(),
            manifest,
            mine,
        };
        ShardRun {
            session: Arc::new(Mutex::new(session)),
        }
    }

    /// Marks the shard finished: every image tried, those where `done` is false failed.
    pub fn finish(self, done: impl Fn(&str) -> bool) -> Result<()> {
        let mut session = lock(&self.session);
        let Session {
            out,
            manifest,
            mine,
        } = &mut *session;
        let Some(manifest) = manifest else {
            return Ok(());
        };
        manifest.failed = manifest
            .images
            .iter()
            .filter(|k| mine.contains(k.as_str()) && !done(k))
            .cloned()
            .collect();
        manifest.finished = Some(now());
        manifest.write(out)
    }

    /// What marks this shard stopped if its session ends before it finishes.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            session: Arc::clone(&self.session),
        }
    }
}

impl Stopper {
    /// Records in the manifest that the session stopped now, and why; nothing for a
    /// run without `--shard` or a shard that finished.
    pub fn stop(&self, why: Stop) -> Result<()> {
        let mut session = lock(&self.session);
        let Session { out, manifest, .. } = &mut *session;
        match manifest {
            Some(manifest) if manifest.finished.is_none() => {
                manifest.stopped = Some(Stopped { at: now(), why });
                manifest.write(out)
            }
            _ => Ok(()),
        }
    }
}

/// An error unless `new` may carry on the shard `old` describes.
fn check_resumable(old: &Manifest, new: &Manifest, out: &Path) -> Result<()> {
    let what = || {
        format!(
            "{}: resuming shard {}",
            manifest_path(out).display(),
            fmt_shard(new)
        )
    };
    match old.shard {
        None => bail!(
            "{}: the output of a merge, not a shard; write the shard to another file",
            out.display()
        ),
        Some(shard) if old.shard != new.shard => bail!(
            "{}: the output of shard {shard}, not {}; write to another file",
            out.display(),
            fmt_shard(new)
        ),
        Some(_) => {}
    }
    new.check_same_run(old, &what(), "this run has")
}

/// A manifest's shard as `I/N`, or `-` for a merged output.
pub fn fmt_shard(m: &Manifest) -> String {
    m.shard.map_or("-".into(), |s| s.to_string())
}
