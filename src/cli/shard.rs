//! `--shard` and what a shard under way records when it stops before it finishes:
//! the error that ended the run, or the termination signal (SIGTERM: `kill`, or
//! Slurm's `scancel`, time limit, preemption or requeue; SIGINT; SIGHUP), so that
//! `status` and `merge` name it and the command that resumes it.

#[cfg(unix)]
use neuronpath::shards::Signal;
use neuronpath::shards::{Launch, ShardPlan, ShardRun, Stop, Stopper};
use std::sync::Mutex;

/// `--shard`: one shard of a run split over many processes.
#[derive(clap::Args)]
pub struct Sharding {
    /// Run only shard I of N (0 <= I < N; a Slurm array task's
    /// $SLURM_ARRAY_TASK_ID/N): the images whose place among the run's image keys,
    /// sorted, is I modulo N; the same subset on any machine, and shards differ by at
    /// most one image. Each shard writes its own --out, resumable as a single run,
    /// and beside it <out>.shard.json (progress for `status`, what `merge` checks);
    /// `neuronpath merge` then writes the file one run would have.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<neuronpath::data::Shard>,
    /// The shell command that resumes this shard, which `status` and `merge` show if
    /// it stops before it finishes (an error, `kill`, Slurm's scancel or time limit);
    /// the Slurm examples pass their resubmission of the array task. Default: this
    /// command line, run in this folder.
    #[arg(long, value_name = "COMMAND", requires = "shard")]
    pub resume_command: Option<String>,
}

impl Sharding {
    /// The plan of this shard of a run over `images` (every key, in run order).
    pub fn plan(&self, images: Vec<String>) -> ShardPlan {
        let launch = self.shard.map(|_| Launch {
            resume: self.resume_command.clone().unwrap_or_else(this_command),
            slurm_job: slurm_job(),
        });
        ShardPlan::new(self.shard, images, launch)
    }
}

/// This process's command line, run in its folder, quoted for a POSIX shell.
fn this_command() -> String {
    let args: Vec<String> = std::env::args().map(|a| quoted(&a)).collect();
    match std::env::current_dir() {
        Ok(dir) => format!(
            "cd {} && {}",
            quoted(&dir.to_string_lossy()),
            args.join(" ")
        ),
        Err(_) => args.join(" "),
    }
}

/// `text` as one word of a POSIX shell.
fn quoted(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,@%+".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The Slurm job this process runs in (`<array job>_<task>`, or the job id), from
/// the environment Slurm sets.
fn slurm_job() -> Option<String> {
    let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(job), Some(task)) => Some(format!("{job}_{task}")),
        _ => var("SLURM_JOB_ID"),
    }
}

/// The shard under way in this process, marked stopped if the process ends first.
static ACTIVE: Mutex<Option<Stopper>> = Mutex::new(None);

fn take_active() -> Option<Stopper> {
    ACTIVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

/// Marks `shard` stopped if this process ends before it finishes.
pub fn watch(shard: &ShardRun) {
    *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(shard.stopper());
}

/// Records `error` as why the shard under way stopped, if there is one.
pub fn failed(error: &anyhow::Error) {
    if let Some(stopper) = take_active() {
        let message = format!("{error:#}");
        if let Err(e) = stopper.stop(Stop::Error { message }) {
            eprintln!("warning: {e:#}");
        }
    }
}

#[cfg(unix)]
const SIGNALS: [(libc::c_int, Signal); 3] = [
    (libc::SIGTERM, Signal::Sigterm),
    (libc::SIGINT, Signal::Sigint),
    (libc::SIGHUP, Signal::Sighup),
];

/// Takes the termination signals from a thread of their own: each marks the shard
/// under way stopped, then ends the process as the signal would have. Call it before
/// any other thread starts (they inherit the blocked signals).
#[cfg(unix)]
pub fn handle_signals() {
    // SAFETY: plain libc calls on a signal set owned here; blocking signals in this
    // thread before others start, so that only the waiting thread receives them.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for (number, _) in SIGNALS {
            libc::sigaddset(&mut set, number);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        set
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut number = 0;
            // SAFETY: waits on the set blocked above; writes only `number`.
            if unsafe { libc::sigwait(&set, &mut number) } != 0 {
                continue;
            }
            if let Some(&(_, signal)) = SIGNALS.iter().find(|(n, _)| *n == number) {
                if let Some(stopper) = take_active() {
                    if let Err(e) = stopper.stop(Stop::Signal { signal }) {
                        eprintln!("warning: {e:#}");
                    }
                }
            }
            die_of(number);
        });
    if spawned.is_err() {
        // SAFETY: undoes the block above; the default actions apply again.
        unsafe {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// Ends the process by the signal `number`, with its default action.
#[cfg(unix)]
fn die_of(number: libc::c_int) -> ! {
    // SAFETY: restores the default action and unblocks the signal in this thread
    // before raising it there, which ends the process.
    unsafe {
        libc::signal(number, libc::SIG_DFL);
        let mut one: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut one);
        libc::sigaddset(&mut one, number);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
        libc::raise(number);
    }
    std::process::exit(128 + number)
}
