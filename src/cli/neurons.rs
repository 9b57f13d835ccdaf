//! `neuronpath neurons`: what each neuron does, read off a dataset (top-activating
//! exemplars with heatmaps, class profile, direct effect on the logits).

use anyhow::{bail, Result};
use neuronpath::data::Preset;
use neuronpath::model::{fingerprint, Vit};
use neuronpath::record::{read_paths, RecordFile};
use neuronpath::roles::{run, Choice, Neuron, NeuronRecord, NeuronScan, Options, Rank};
use neuronpath::shards::Kind;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: super::ImageRun,
    /// Output JSON-lines file, one record per neuron. A killed scan resumes from
    /// its state, kept beside it as `<out>.scan` (saved every 30 s; removed once the
    /// records are written); neurons already in the file are not described again.
    #[arg(long, default_value = "out/neurons.jsonl")]
    out: PathBuf,
    /// Describe every neuron on some path of this file (all methods); the model's
    /// arithmetic and preprocessing are those the paths were found with.
    #[arg(long, conflicts_with_all = ["neurons", "layers"])]
    paths: Option<PathBuf>,
    /// Describe these neurons, layer:neuron, comma-separated (layers counted from 0
    /// as in a record's path), e.g. 3:120,5:7.
    #[arg(long, value_delimiter = ',', conflicts_with = "layers")]
    neurons: Vec<Neuron>,
    /// Describe every neuron of these layers (a neuron atlas): `all`, or layer
    /// numbers, comma-separated.
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Exemplars kept per neuron, 1 to 1000.
    #[arg(long, default_value_t = 16, value_parser = super::in_range(1, 1000))]
    top: usize,
    /// An image's activation of a neuron, for ranking and the class profile: `cls`,
    /// at the CLS token; `patch-max`, the largest over the patch tokens;
    /// `patch-mean`, their mean. Default: patch-mean for a family whose neuron spans
    /// the patches (MAE), else cls.
    #[arg(long, value_parser = super::named::<Rank>())]
    rank: Option<Rank>,
    /// Input normalisation (default: the paths' with --paths, else the checkpoint's).
    #[arg(long, value_parser = super::named::<Preset>())]
    preprocess: Option<Preset>,
    /// Images per forward pass, 1 to 1024 (default: as many as keep the kept
    /// activations near 256 MB). The results are the same whatever the batch.
    #[arg(long, value_parser = super::in_range(1, 1024))]
    batch: Option<usize>,
    #[command(flatten)]
    labels: super::LabelMap,
    #[command(flatten)]
    sharding: super::Sharding,
}

/// The neurons asked for, checked against the model, and the preprocessing; sets
/// the model up as the paths were found when they come from a paths file.
fn chosen(args: &Args, vit: &mut Vit) -> Result<(Vec<Neuron>, Preset)> {
    let records;
    let choice = if let Some(file) = &args.paths {
        super::note_if_being_written(file);
        records = read_paths(file)?;
        Choice::OnPaths {
            records: &records,
            file,
        }
    } else if !args.neurons.is_empty() {
        Choice::Given(args.neurons.clone())
    } else if args.layers.is_empty() {
        bail!("say which neurons to describe: --paths FILE, --neurons 3:120,5:7, or --layers all");
    } else if args.layers.iter().any(|l| l == "all") {
        Choice::Layers(None)
    } else {
        let number = |l: &String| {
            (l.trim().parse::<usize>())
                .map_err(|_| anyhow::anyhow!("--layers {l:?}: a layer number or `all`"))
        };
        Choice::Layers(Some(args.layers.iter().map(number).collect::<Result<_>>()?))
    };
    let (neurons, found) = choice.resolve(vit)?;
    let preset = args.preprocess.or(found).unwrap_or(Preset::Checkpoint);
    Ok((neurons, preset))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut vit = args.run.load()?;
    let (neurons, preprocess) = chosen(&args, &mut vit)?;
    let rank = args.rank.unwrap_or_else(|| Rank::default_for(&vit));
    let model = fingerprint(&args.run.model.model, &vit)?;
    let settings = NeuronRecord::shared(&model, rank, preprocess);
    let mut out = RecordFile::<NeuronRecord>::open(&args.out, &settings)?;
    let todo: Vec<Neuron> = (neurons.iter().copied())
        .filter(|n| !out.contains(&n.to_string()))
        .collect();
    // Labels give the class profiles; images without one are scanned all the same.
    let label_map = args.labels.label_map.as_deref();
    let mut set = super::image_set(&args.run.images, &vit, label_map, false)?;
    let plan = args
        .sharding
        .plan(set.entries.iter().map(|e| e.key.clone()).collect());
    set.entries.retain(|e| plan.mine(&e.key));
    let described = fingerprint_of(&neurons);
    let more = vec![("top", args.top.to_string()), ("neurons", described)];
    let shard_settings = [settings, more].concat();
    let shard = plan.begin(&args.out, Kind::Neurons, &shard_settings, |_| {
        todo.is_empty()
    })?;
    super::shard::watch(&shard);
    if todo.is_empty() {
        eprintln!(
            "every neuron asked for is already in {}",
            args.out.display()
        );
        shard.finish(|_| true)?;
        return Ok(ExitCode::SUCCESS);
    }
    let norm = neuronpath::data::normalization(&vit, preprocess);
    let options = Options {
        rank,
        top: args.top,
        batch: args
            .batch
            .unwrap_or_else(|| Options::default_batch(&vit, rank)),
        preprocess,
    };
    let job = NeuronScan {
        set: &set,
        norm: &norm,
        neurons: todo,
        options,
        model: (args.run.model.model.display().to_string(), model),
    };
    let Some(failed) = describe(&job, &mut vit, &mut out, &args)? else {
        return Ok(ExitCode::FAILURE);
    };
    shard.finish(|k| !failed.contains(k))?;
    // A failure when there were images and none of them could be read.
    Ok(
        if !set.entries.is_empty() && failed.len() == set.entries.len() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// Identifies a set of neurons (the shards of a run describe the same).
fn fingerprint_of(neurons: &[Neuron]) -> String {
    let names: Vec<String> = neurons.iter().map(Neuron::to_string).collect();
    neuronpath::numeric::fingerprint(names.join(",").as_bytes())
}

/// Scans, describes and writes the neurons of `job`; returns the keys of the images
/// that failed, or none when the scan was stopped (its state kept).
fn describe(
    job: &NeuronScan,
    vit: &mut Vit,
    out: &mut RecordFile<NeuronRecord>,
    args: &Args,
) -> Result<Option<HashSet<String>>> {
    eprintln!(
        "{} neurons over {} images, ranked by {}, top {}, batch {}",
        job.neurons.len(),
        job.set.entries.len(),
        job.options.rank,
        job.options.top,
        job.options.batch
    );
    let state = run::state_file(&args.out);
    let bar = super::Bar::new();
    let found = super::with_threads(args.run.threads, || job.describe(vit, Some(&state), &bar))??;
    let Some((records, failed)) = found else {
        eprintln!("stopped; run again to resume from {}", state.display());
        return Ok(None);
    };
    let scanned = records.first().map_or(0, |r| r.images);
    for record in records {
        out.append(record)?;
    }
    std::fs::remove_file(&state).ok();
    eprintln!(
        "done: {} neurons written to {}; {scanned} images scanned, {} skipped",
        job.neurons.len(),
        args.out.display(),
        failed.len()
    );
    Ok(Some(failed.into_iter().collect()))
}
