//! `neuronpath status`: how far the sharded runs in a folder have got.

use anyhow::{bail, Result};
use neuronpath::shards::{merge::listing, status, RunStatus, ShardStatus};
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

/// `finished`, `running`, or `stalled?` when nothing was written for ten minutes
/// and ten images' time (killed, or its job was requeued: rerun it to resume).
fn state(s: &ShardStatus) -> &'static str {
    let patience = s.rate.map_or(600.0, |r| (10.0 / r).max(600.0));
    match (s.finished, s.idle) {
        (true, _) => "finished",
        (false, Some(idle)) if idle as f64 > patience => "stalled?",
        _ => "running",
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
