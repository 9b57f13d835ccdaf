//! `neuronpath report`: one self-contained HTML page from the result files.

use anyhow::{Context, Result};
use neuronpath::record::read_records;
use neuronpath::report::{render, Inputs};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Path records written by `neuronpath paths` (JSON lines).
    #[arg(long, default_value = "out/paths.jsonl")]
    paths: PathBuf,
    /// The image folder given to `paths`; thumbnails are read from there (an image
    /// that cannot be read is shown without one).
    #[arg(long, default_value = super::DEFAULT_IMAGES)]
    images: PathBuf,
    /// Output HTML file: self-contained, opens from disk with no network.
    #[arg(long, default_value = "out/report.html")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let records = read_records(&args.paths)?;
    if records.is_empty() {
        anyhow::bail!("{}: no path records in the file", args.paths.display());
    }
    let report = render(&Inputs {
        records,
        images: args.images.clone(),
        sources: vec![args.paths.display().to_string()],
    })?;
    if !report.missing_images.is_empty() {
        eprintln!(
            "{} of {} images shown without a thumbnail (is --images the folder given to paths?); first: {}",
            report.missing_images.len(),
            report.images,
            report.missing_images[0]
        );
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    std::fs::write(&args.out, &report.html)
        .with_context(|| format!("{}: cannot write", args.out.display()))?;
    let absolute = std::fs::canonicalize(&args.out).unwrap_or(args.out.clone());
    eprintln!(
        "report of {} images ({:.1} MB): open {}",
        report.images,
        report.html.len() as f64 / 1e6,
        absolute.display()
    );
    Ok(ExitCode::SUCCESS)
}
