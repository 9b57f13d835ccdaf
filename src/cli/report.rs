//! `neuronpath report`: one self-contained HTML page from the result files.

use anyhow::{Context, Result};
use neuronpath::experiments::stats::StatsFile;
use neuronpath::record::{read_paths, read_records};
use neuronpath::report::{render, Inputs, Names};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Path records written by `neuronpath paths` (JSON lines): one figure per image,
    /// the methods' JAS compared.
    #[arg(long, default_value = "out/paths.jsonl")]
    paths: PathBuf,
    /// Results of `neuronpath manipulate` (JSON lines): adds each image's probability
    /// after removal / enhancement and the methods' probability and accuracy changes.
    /// Without it those parts are left out.
    #[arg(long)]
    manipulate: Option<PathBuf>,
    /// Class statistics written by `neuronpath stats` (JSON): the per-class frequency
    /// maps. Without it they are computed from --paths.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// The image folder given to `paths`; thumbnails are read from there (an image
    /// that cannot be read is shown without one).
    #[arg(long, default_value = super::DEFAULT_IMAGES)]
    images: PathBuf,
    /// Neuron descriptions written by `neuronpath neurons` (JSON lines): a card for
    /// every path neuron described there, linked from the image tables and class
    /// paths. Without it there are no cards.
    #[arg(long)]
    neurons: Option<PathBuf>,
    /// The image folder given to `neurons`, where its exemplars' thumbnails are read
    /// (default: --images).
    #[arg(long)]
    neuron_images: Option<PathBuf>,
    /// Output HTML file: self-contained, opens from disk with no network.
    #[arg(long, default_value = "out/report.html")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut sources = vec![args.paths.display().to_string()];
    super::note_if_being_written(&args.paths);
    let records = read_paths(&args.paths)?;
    let mut read = |path: &Option<PathBuf>| -> Option<PathBuf> {
        let path = path.clone()?;
        sources.push(path.display().to_string());
        super::note_if_being_written(&path);
        Some(path)
    };
    let manipulations = match read(&args.manipulate) {
        Some(path) => read_records(&path)?,
        None => vec![],
    };
    let stats = match read(&args.stats) {
        Some(path) => {
            let text = neuronpath::files::read_text(&path)?;
            let stats: StatsFile = serde_json::from_str(&text).with_context(|| {
                format!("{}: not a stats file of `neuronpath stats`", path.display())
            })?;
            Some(stats)
        }
        None => None,
    };
    let neurons = match read(&args.neurons) {
        Some(path) => read_records(&path)?,
        None => vec![],
    };
    let inputs = Inputs {
        records,
        manipulations,
        stats,
        images: args.images.clone(),
        neurons,
        neuron_images: args.neuron_images.clone().unwrap_or(args.images.clone()),
        sources,
    };
    let name = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    };
    let (paths, manipulate) = (args.paths.display().to_string(), name(&args.manipulate));
    let (stats, neurons) = (name(&args.stats), name(&args.neurons));
    neuronpath::report::check(
        &inputs,
        &Names {
            paths: &paths,
            manipulate: &manipulate,
            stats: &stats,
            neurons: &neurons,
        },
    )?;
    let report = render(&inputs).with_context(|| args.paths.display().to_string())?;
    if !report.missing_images.is_empty() {
        eprintln!(
            "{} of {} images shown without a thumbnail (is --images the folder given to paths?); first: {}",
            report.missing_images.len(),
            report.images,
            report.missing_images[0]
        );
    }
    let marker = "<title>neuronpath report</title>";
    neuronpath::record::write_output(&args.out, report.html.as_bytes(), marker)?;
    let absolute = std::fs::canonicalize(&args.out).unwrap_or(args.out.clone());
    eprintln!(
        "report of {} images ({:.1} MB): open {}",
        report.images,
        report.html.len() as f64 / 1e6,
        absolute.display()
    );
    Ok(ExitCode::SUCCESS)
}
