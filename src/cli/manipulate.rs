//! `neuronpath manipulate`: remove or enhance each image's path neurons and measure
//! the change in the prediction, per method.

use anyhow::{bail, Result};
use neuronpath::attribution::Method;
use neuronpath::experiments::manipulate::{summarize, ManipulationRecord, ManipulationSummary, Op};
use neuronpath::jobs::{manipulate, Pixels};
use neuronpath::record::{read_all, read_paths, unrecorded, PathRecord, RecordFile, Setting};
use neuronpath::shards::Kind;
use std::collections::HashSet;
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
    #[arg(long, value_parser = super::named::<Method>(), value_delimiter = ',')]
    method: Vec<Method>,
    #[command(flatten)]
    sharding: super::Sharding,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut vit = args.input.run.load()?;
    super::note_if_being_written(&args.input.paths);
    let mut records = read_paths(&args.input.paths)?;
    if !args.method.is_empty() {
        records.retain(|r| args.method.contains(&r.method));
        if records.is_empty() {
            bail!(
                "{}: no paths of method {}",
                args.input.paths.display(),
                super::names(&args.method)
            );
        }
    }
    let norm = neuronpath::record::as_found(&mut vit, &records, &args.input.paths)?;
    neuronpath::record::check_against(&vit, &records, &args.input.paths)?;
    let plan = args.sharding.plan(image_keys(&records));
    records.retain(|r| plan.mine(&r.image));
    let pixels = Pixels::Files(&args.input.run.images);
    let model = &args.input.run.model.model;
    manipulate::check_sources(&vit, model, &records, pixels, &args.input.paths)?;
    let ops: &[Op] = match args.op {
        OpChoice::Remove => &[Op::Remove],
        OpChoice::Enhance => &[Op::Enhance],
        OpChoice::Both => &[Op::Remove, Op::Enhance],
    };
    let made_with = records.iter().find_map(|r| r.model_fingerprint.clone());
    let settings = [("model fingerprint", made_with.unwrap_or_else(unrecorded))];
    let mut out = RecordFile::<ManipulationRecord>::open(&args.out, &settings)?;
    let before = pending(&records, ops, &out);
    let shard = plan.begin(
        &args.out,
        Kind::Manipulate,
        &shard_settings(&args, ops, &settings)?,
        |k| !before.contains(k),
    )?;
    super::shard::watch(&shard);
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
    let after = pending(&records, ops, &out);
    shard.finish(|k| !after.contains(k))?;
    let all: Vec<ManipulationRecord> = read_all(&args.out)?;
    print_summary(&summarize(&all));
    eprintln!("records in {}; {failed} images failed", args.out.display());
    Ok(if failed > 0 && failed == images.len() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The image keys of `records`, in file order.
fn image_keys(records: &[PathRecord]) -> Vec<String> {
    let mut seen = HashSet::new();
    records
        .iter()
        .filter(|r| seen.insert(&r.image))
        .map(|r| r.image.clone())
        .collect()
}

/// What the shards of a run must agree on: the model, the paths file, the
/// operations and the methods.
fn shard_settings(args: &Args, ops: &[Op], settings: &[Setting]) -> Result<Vec<Setting>> {
    let paths = neuronpath::files::read(&args.input.paths, neuronpath::files::WHOLE)?;
    let more = [
        ("paths file", neuronpath::numeric::fingerprint(&paths)),
        ("op", super::names(ops)),
        ("methods", super::names(&args.method)),
    ];
    Ok([settings, &more].concat())
}

/// The images of `records` with a (path, op) not yet in `out`.
fn pending<'a>(
    records: &'a [PathRecord],
    ops: &[Op],
    out: &RecordFile<ManipulationRecord>,
) -> HashSet<&'a str> {
    let missing = |r: &PathRecord, op: &Op| {
        !out.contains(&ManipulationRecord::key_of(&r.image, r.method, *op))
    };
    records
        .iter()
        .filter(|r| ops.iter().any(|op| missing(r, op)))
        .map(|r| r.image.as_str())
        .collect()
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
