//! `neuronpath manipulate`: remove or enhance each image's path neurons and measure
//! the change in the prediction, per method.

use anyhow::{bail, Context, Result};
use neuronpath::attribution::{ImageContext, Method};
use neuronpath::data;
use neuronpath::experiments::manipulate::{self, check_path, ManipulationRecord, Op};
use neuronpath::experiments::{check_clean_prob, check_inputs};
use neuronpath::model::{fingerprint, Vit};
use neuronpath::names::Named;
use neuronpath::record::{read_all, read_paths, unrecorded, PathRecord, RecordFile, Setting};
use neuronpath::shards::{Kind, ShardPlan};
use std::collections::{HashMap, HashSet};
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
    let mut vit = args.input.run.model.load()?;
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
    let norm = super::as_found(&mut vit, &records, &args.input.paths)?;
    for r in &records {
        check_path(&vit, r).with_context(|| args.input.paths.display().to_string())?;
    }
    let model = fingerprint(&args.input.run.model.model, &vit)?;
    let plan = ShardPlan::new(args.sharding.shard, image_keys(&records));
    records.retain(|r| plan.mine(&r.image));
    check_inputs(&records, &model, &args.input.run.images, &args.input.paths)?;
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
    // One batch per image, in file order: every (path, op) of it not yet in the output.
    let mut images: Vec<(&str, Vec<(&PathRecord, Op)>)> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        let i = *position.entry(&r.image).or_insert_with(|| {
            images.push((&r.image, Vec::new()));
            images.len() - 1
        });
        for &op in ops {
            match out.get(&ManipulationRecord::key_of(&r.image, r.method, op)) {
                None => images[i].1.push((r, op)),
                Some(m) if m.path_fingerprint != Some(r.fingerprint()) => bail!(
                    "{}: the {} record of {} ({}) was made from another path record than {} holds; write to another file to start afresh",
                    args.out.display(),
                    op.name(),
                    r.image,
                    r.method,
                    args.input.paths.display()
                ),
                Some(_) => {}
            }
        }
    }
    let total = images.len();
    images.retain(|(_, items)| !items.is_empty());
    eprintln!(
        "{} paths of {total} images; {} images to run",
        records.len(),
        images.len()
    );
    let bar = super::progress(images.len(), "images");
    let mut failed = 0usize;
    super::with_threads(args.input.run.threads, || -> Result<()> {
        for (key, items) in &images {
            let path = data::folder::path_of(&args.input.run.images, key);
            match data::load_image(&path, &vit, &norm) {
                Ok(pixels) => {
                    for written in run_image(&vit, key, pixels, items)
                        .with_context(|| args.input.paths.display().to_string())?
                    {
                        out.append(written)?;
                    }
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("skipped {}: {e:#}", path.display()));
                    failed += 1;
                }
            }
            bar.inc(1);
        }
        Ok(())
    })??;
    bar.finish_and_clear();
    let after = pending(&records, ops, &out);
    shard.finish(|k| !after.contains(k))?;
    let all: Vec<ManipulationRecord> = read_all(&args.out)?;
    print_summary(&manipulate::summarize(&all));
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
    let paths = std::fs::read(&args.input.paths)
        .with_context(|| format!("{}: cannot read", args.input.paths.display()))?;
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

/// The image's items grouped by target (normally one), each group one batch; an
/// error when the clean pass is not the one the paths were found with.
fn run_image(
    vit: &Vit,
    key: &str,
    pixels: Vec<f32>,
    items: &[(&PathRecord, Op)],
) -> Result<Vec<ManipulationRecord>> {
    let mut targets: Vec<usize> = items.iter().map(|(r, _)| r.target).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut written = Vec::new();
    for target in targets {
        let image = ImageContext::new(vit, key.to_string(), pixels.clone(), target);
        let group: Vec<(&PathRecord, Op)> = items
            .iter()
            .filter(|(r, _)| r.target == target)
            .copied()
            .collect();
        for (r, _) in &group {
            check_clean_prob(vit, &image, r)?;
        }
        written.extend(manipulate::manipulate(vit, &image, &group));
    }
    Ok(written)
}

fn print_summary(summary: &[manipulate::ManipulationSummary]) {
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
