//! `neuronpath status`: how far the sharded runs in a folder have got.

use anyhow::{bail, Result};
use neuronpath::shards::{merge::listing, status, Launch, RunStatus, ShardStatus, Stop};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The folder holding the shards' outputs and their <out>.shard.json manifests
    /// (not searched below). Read only: running shards are not disturbed.
    #[arg(default_value = "out")]
    dir: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let runs = status(&args.dir)?;
    if runs.is_empty() {
        bail!(
            "{}: no shard manifests (*.shard.json) here; runs with --shard I/N write them beside their --out",
            args.dir.display()
        );
    }
    for run in &runs {
        print_run(run);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_run(run: &RunStatus) {
    let (done, total, failed) = run.totals();
    println!(
        "{} run in {} shards, {total} images",
        run.kind.name(),
        run.count
    );
    println!(
        "{:<7} {:>13} {:>7}  {:<12} {:>11} {:>10} {:>9}  file",
        "shard", "done", "failed", "state", "last write", "images/s", "ETA"
    );
    for s in &run.shards {
        println!(
            "{:<7} {:>13} {:>7}  {:<12} {:>11} {:>10} {:>9}  {}",
            s.shard.to_string(),
            format!("{}/{}", s.done, s.total),
            s.failed.map_or("-".into(), |f| f.to_string()),
            state(s),
            s.idle
                .map_or("-".into(), |i| format!("{} ago", duration(i as f64))),
            s.rate.map_or("-".into(), |r| format!("{r:.3}")),
            s.eta.filter(|_| !s.finished).map_or("-".into(), duration),
            s.file.display()
        );
    }
    if !run.missing.is_empty() {
        let images: usize = run.missing.iter().map(|(_, n)| n).sum();
        let indices: Vec<String> = run
            .missing
            .iter()
            .map(|(s, _)| s.index().to_string())
            .collect();
        println!(
            "not started: {} shards ({images} images): {}",
            run.missing.len(),
            listing(&indices)
        );
    }
    for s in run.shards.iter().filter(|s| needs_resuming(s)) {
        print_unfinished(s);
    }
    println!(
        "{:<7} {:>13} {:>7}  {:<12} {:>11} {:>10} {:>9}",
        "all",
        format!("{done}/{total}"),
        failed,
        if run.shards.iter().all(|s| s.finished) && run.missing.is_empty() {
            "finished"
        } else {
            ""
        },
        "",
        "",
        run.eta().map_or("unknown".into(), duration)
    );
}

/// `finished`; `failed` (an error ended its session) or `stopped` (a signal did:
/// kill, scancel, a time limit); `stalled?` when nothing was written for ten
/// minutes and ten images' time (killed outright, or its job was lost); `running`.
fn state(s: &ShardStatus) -> &'static str {
    let patience = s.rate.map_or(600.0, |r| (10.0 / r).max(600.0));
    match (s.finished, &s.stopped, s.idle) {
        (true, _, _) => "finished",
        (false, Some(stopped), _) => match stopped.why {
            Stop::Error { .. } => "failed",
            Stop::Signal { .. } => "stopped",
        },
        (false, None, Some(idle)) if idle as f64 > patience => "stalled?",
        _ => "running",
    }
}

/// Whether the shard has to be resumed: it failed, stopped or stalled.
fn needs_resuming(s: &ShardStatus) -> bool {
    matches!(state(s), "failed" | "stopped" | "stalled?")
}

/// What happened to an unfinished shard that is not running, and how to resume it.
fn print_unfinished(s: &ShardStatus) {
    let when = |at: u64| duration(neuronpath::shards::now().saturating_sub(at) as f64);
    let why = match &s.stopped {
        Some(stopped) => format!("{} {} ago: {}", state(s), when(stopped.at), stopped.why),
        None => "stalled? nothing written for a while: killed outright, or its job was lost".into(),
    };
    let job = s.launch.as_ref().map_or(String::new(), Launch::job);
    println!("shard {} {why}{job}", s.shard);
    match &s.launch {
        Some(launch) => println!(
            "  resume it (it carries on where it stopped): {}",
            launch.resume
        ),
        None => println!("  resume it: rerun its command (it carries on where it stopped)"),
    }
}

/// Seconds as `2d 03h`, `1h 05m`, `4m 10s` or `9s`.
fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}
