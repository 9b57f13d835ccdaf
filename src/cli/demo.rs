//! `neuronpath demo`: the whole pipeline on the bundled model and images (paths
//! by every method, their removal and enhancement, class statistics, what the path
//! neurons do, and the HTML report), so that a newcomer sees the results with one command, in a few minutes.
//!
//! Each step is the subcommand itself, parsed from the command line a user would
//! type, so the demo shows exactly what the commands do.

use anyhow::{bail, Result};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Folder for the results: paths.jsonl, manipulate.jsonl, stats.json,
    /// neurons.jsonl and report.html. Rerunning resumes (finished steps are quick).
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Worker threads, 1 to 1024 (default: all cores).
    #[arg(long, value_parser = super::in_range(1, 1024))]
    threads: Option<usize>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let file = |name: &str| args.out.join(name).display().to_string();
    let (paths, manipulations, stats, neurons, report) = (
        file("paths.jsonl"),
        file("manipulate.jsonl"),
        file("stats.json"),
        file("neurons.jsonl"),
        file("report.html"),
    );
    let threads: Vec<String> = match args.threads {
        Some(t) => vec!["--threads".into(), t.to_string()],
        None => vec![],
    };
    let command = |words: &[&str], threaded: bool| -> Vec<String> {
        let mut argv: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        if threaded {
            argv.extend(threads.iter().cloned());
        }
        argv
    };
    let steps = [
        command(&["paths", "--out", &paths], true),
        command(
            &["manipulate", "--paths", &paths, "--out", &manipulations],
            true,
        ),
        command(&["stats", "--paths", &paths, "--out", &stats], false),
        command(&["neurons", "--paths", &paths, "--out", &neurons], true),
        command(
            &[
                "report",
                "--paths",
                &paths,
                "--manipulate",
                &manipulations,
                "--stats",
                &stats,
                "--neurons",
                &neurons,
                "--out",
                &report,
            ],
            false,
        ),
    ];
    for step in steps {
        eprintln!("\n== neuronpath {}", step.join(" "));
        let cli =
            super::Cli::try_parse_from(std::iter::once("neuronpath".to_string()).chain(step))?;
        if super::dispatch(cli.command)? != ExitCode::SUCCESS {
            bail!("the step above failed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
