//! `neuronpath prune`: keep each class's most used neurons, zero the others, and
//! measure the class's probability and accuracy on held-out images.

use anyhow::{bail, Context, Result};
use neuronpath::attribution::Method;
use neuronpath::attribution::{ImageContext, Target};
use neuronpath::experiments::check_inputs;
use neuronpath::experiments::prune::{self, PruneReport, PruneResult, PruneSettings, PruneTally};
use neuronpath::experiments::stats::path_stats;
use neuronpath::model::fingerprint;
use neuronpath::record::{read_paths, PathRecord};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: super::ExperimentRun,
    /// Whose paths choose the kept neurons.
    #[arg(long, value_parser = super::named::<Method>(), default_value_t = Method::Jas)]
    method: Method,
    /// Neurons kept per layer for each class: its K most frequent on its paths.
    #[arg(long)]
    top_k: usize,
    /// Share of the other CLS FFN neurons zeroed at every layer (a seeded random
    /// subset when below 1).
    #[arg(long, default_value_t = 1.0)]
    fraction: f64,
    /// Share of each class's images (the last in name order) held out for evaluation;
    /// the rest build the class neuron sets. 0 evaluates on the building images.
    #[arg(long, default_value_t = 0.5)]
    holdout: f64,
    /// Seed of the random subsets (fraction < 1, and the random-keep control).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output JSON: per class and overall, probability and accuracy unpruned, pruned
    /// and with the control.
    #[arg(long, default_value = "out/prune.json")]
    out: PathBuf,
    /// Class of each class folder, when the folder names are not the model's class
    /// names (the file `paths` was given, if any).
    #[arg(long)]
    label_map: Option<PathBuf>,
}

/// What a pruning report holds near its start (see `check_output`).
const PRUNE_MARKER: &str = "\"top_k\":";

pub fn run(args: Args) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.fraction) || !(0.0..1.0).contains(&args.holdout) {
        bail!("--fraction must be in [0, 1] and --holdout in [0, 1)");
    }
    neuronpath::record::check_output(&args.out, PRUNE_MARKER)?;
    let mut vit = args.input.run.load()?;
    if !(1..=vit.units()).contains(&args.top_k) {
        bail!(
            "--top-k {}: must be 1 to {} (the model's neurons per layer)",
            args.top_k,
            vit.units()
        );
    }
    let paths = &args.input.paths;
    super::note_if_being_written(paths);
    let all = read_paths(paths)?;
    let norm = neuronpath::record::as_found(&mut vit, &all, paths)?;
    neuronpath::record::check_against(&vit, &all, paths)?;
    let set = super::image_set(
        &args.input.run.images,
        &vit,
        args.label_map.as_deref(),
        true,
    )?;
    let split = prune::split(&set, args.holdout);
    if split.evaluate.is_empty() {
        bail!(
            "{}: no labelled images to evaluate (prune needs an ImageFolder tree, one folder per class)",
            args.input.run.images.display()
        );
    }
    let records: Vec<PathRecord> = (all.into_iter())
        .filter(|r: &PathRecord| split.build.contains(&r.image))
        .collect();
    let stats = path_stats(&records, args.method).with_context(|| {
        format!(
            "{}: among the paths of the building images of {}",
            args.input.paths.display(),
            args.input.run.images.display()
        )
    })?;
    if stats.neurons != vit.units() || stats.layers != vit.config.layers {
        bail!(
            "{}: paths of {} layers x {} neurons, but the model has {} x {}",
            args.input.paths.display(),
            stats.layers,
            stats.neurons,
            vit.config.layers,
            vit.units()
        );
    }
    let model = fingerprint(&args.input.run.model.model, &vit)?;
    check_inputs(&records, &model, &args.input.run.images, &args.input.paths)?;
    let build_paths = stats.classes.iter().map(|c| c.images).sum();
    let settings = PruneSettings {
        top_k: args.top_k,
        fraction: args.fraction,
        seed: args.seed,
    };
    let plans = prune::plan(&stats, settings);
    eprintln!(
        "{} {} paths build {} classes' neuron sets; evaluating {} images",
        build_paths,
        args.method,
        plans.len(),
        split.evaluate.len()
    );
    let mut tally = PruneTally::new(&plans);
    let bar = super::progress(split.evaluate.len(), "images");
    let mut evaluated = 0;
    super::with_threads(args.input.run.threads, || {
        for entry in &split.evaluate {
            match ImageContext::load(&vit, entry, &norm, Target::Label) {
                Ok(image) => evaluated += usize::from(tally.evaluate(&vit, &plans, &image)),
                Err(e) => bar.suspend(|| eprintln!("skipped {}: {e:#}", entry.path.display())),
            }
            bar.inc(1);
        }
    })?;
    bar.finish_and_clear();
    let (classes, overall) = tally.finish();
    let report = PruneReport {
        method: args.method,
        top_k: args.top_k,
        fraction: args.fraction,
        holdout: args.holdout,
        seed: args.seed,
        build_paths,
        evaluated_images: evaluated,
        classes,
        overall,
    };
    let json = serde_json::to_vec_pretty(&report)?;
    neuronpath::record::write_output(&args.out, &json, PRUNE_MARKER)?;
    println!("target-class probability and top-1 accuracy");
    println!(
        "{:<12} {:>6}  {:>15}  {:>15}  {:>15}",
        "class", "images", "unpruned", "pruned", "random control"
    );
    for r in report.classes.iter().chain([&report.overall]) {
        print_row(r);
    }
    eprintln!("written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn print_row(r: &PruneResult) {
    let name = r
        .name
        .clone()
        .or(r.class.map(|c| c.to_string()))
        .unwrap_or_else(|| "all".into());
    let cell = |prob: f64, acc: f64| format!("{prob:.3} {:>6.1}%", 100.0 * acc);
    println!(
        "{:<12} {:>6}  {:>15}  {:>15}  {:>15}",
        name,
        r.images,
        cell(r.prob_unpruned, r.accuracy_unpruned),
        cell(r.prob_pruned, r.accuracy_pruned),
        cell(r.prob_control, r.accuracy_control)
    );
}
