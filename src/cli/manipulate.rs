//! `neuronpath manipulate`: remove or enhance each image's path neurons and measure
//! the change in the prediction, per method.

use anyhow::Result;
use neuronpath::experiments::manipulate::{summarize, ManipulationRecord, ManipulationSummary, Op};
use neuronpath::jobs::{self, manipulate, Pixels};
use neuronpath::record::{read_paths, read_records, unrecorded, RecordFile};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OpChoice {
    /// Path neurons set to 0.
    Remove,
    /// Path neurons doubled.
    Enhance,
    /// Both, one record each.
    Both,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: super::ExperimentRun,
    /// Output JSON-lines file, one record per image, method and operation; rerunning
    /// with the same file resumes.
    #[arg(long, default_value = "out/manipulate.jsonl")]
    out: PathBuf,
    /// What to do to the path neurons, at every layer at once.
    #[arg(long, value_enum, default_value_t = OpChoice::Both)]
    op: OpChoice,
    /// Only the paths of these methods, comma-separated (default: every method in the file).
    #[arg(long, value_delimiter = ',')]
    method: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut vit = args.input.run.model.load()?;
    let mut records = read_paths(&args.input.paths)?;
    manipulate::select(&mut records, &args.method, &args.input.paths)?;
    let norm = jobs::as_found(&mut vit, &records, &args.input.paths)?;
    let pixels = Pixels::Files(&args.input.run.images);
    let model = &args.input.run.model.model;
    manipulate::check(&vit, model, &records, pixels, &args.input.paths)?;
    let ops: &[Op] = match args.op {
        OpChoice::Remove => &[Op::Remove],
        OpChoice::Enhance => &[Op::Enhance],
        OpChoice::Both => &[Op::Remove, Op::Enhance],
    };
    let made_with = records.iter().find_map(|r| r.model_fingerprint.clone());
    let settings = [("model fingerprint", made_with.unwrap_or_else(unrecorded))];
    let mut out = RecordFile::<ManipulationRecord>::open(&args.out, &settings)?;
    let mut images = manipulate::plan(&records, ops, Some(&out), &args.out, &args.input.paths)?;
    let total = images.len();
    images.retain(|(_, items)| !items.is_empty());
    eprintln!(
        "{} paths of {total} images; {} images to run",
        records.len(),
        images.len()
    );
    let bar = super::Bar::new();
    let mut sink = |record| out.append(record);
    let failed = super::with_threads(args.input.run.threads, || {
        let paths = &args.input.paths;
        manipulate::run(&vit, &norm, pixels, &images, paths, &mut sink, &bar)
    })??;
    let all: Vec<ManipulationRecord> = read_records(&args.out)?;
    print_summary(&summarize(&all));
    eprintln!("records in {}; {failed} images failed", args.out.display());
    Ok(if failed > 0 && failed == images.len() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(summary: &[ManipulationSummary]) {
    println!(
        "{:<12} {:<8} {:>7} {:>12} {:>9} {:>9} {:>9}",
        "method", "op", "images", "prob dev", "acc", "acc after", "acc dev"
    );
    for s in summary {
        println!(
            "{:<12} {:<8} {:>7} {:>+11.2}% {:>8.1}% {:>8.1}% {:>+8.1}%",
            s.method,
            s.op,
            s.images,
            100.0 * s.prob_deviation,
            100.0 * s.accuracy_before,
            100.0 * s.accuracy_after,
            100.0 * s.accuracy_deviation
        );
    }
}
