//! `neuronpath paths`: influential neuron paths of every image, resumable.

use anyhow::Result;
use neuronpath::attribution::{Method, Rule, ScoreForm, Search, Target};
use neuronpath::data::Preset;
use neuronpath::jobs::paths::{check_resumed, Input, PathsJob};
use neuronpath::model::{Compat, Tokens};
use neuronpath::record::{PathRecord, Record, RecordFile};
use neuronpath::shards::Kind;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: super::ImageRun,
    /// Output JSON-lines file, one record per image and method. Rerunning with the
    /// same file resumes: records already there are kept and skipped.
    #[arg(long, default_value = "out/paths.jsonl")]
    out: PathBuf,
    /// Methods to run, comma-separated; every path is scored with the same JAS
    /// (default: all; with --top-k above 1, jas and activation).
    #[arg(long, value_parser = super::named::<Method>(), value_delimiter = ',')]
    method: Vec<Method>,
    /// Neurons per layer of the jas and activation paths: the K best of each layer
    /// (by JAS, or by activation), all K scaled together in the later layers, as the
    /// reference's top-K program. The score counts all K (with --compat reference,
    /// only the last-listed neuron of each layer, as that program does). The path
    /// is then written per layer as a list of K neurons, best first.
    #[arg(long, default_value_t = 1)]
    top_k: usize,
    /// Beam search for jas: keep the B best partial paths (by JAS) at every layer and
    /// return the best full path; 1 is the paper's greedy search. Costs about B times
    /// the greedy search. Not with --top-k.
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Full jas paths written per image with --beam, best first (their `rank`: 0 is
    /// the best; manipulate, stats, prune and report use rank 0). At most --beam.
    #[arg(long, default_value_t = 1)]
    paths_per_image: usize,
    /// Seed of the `random` method (a path depends only on the seed and the image).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Integration steps m (points, for Gauss-Legendre), 1 to 1000.
    #[arg(long, default_value_t = 20, value_parser = super::in_range(1, 1000))]
    steps: usize,
    /// Integration rule.
    #[arg(long, value_parser = super::named::<Rule>(), default_value_t = Rule::LeftRiemann)]
    integration: Rule,
    /// How per-neuron attributions combine into the path score.
    #[arg(long, value_parser = super::named::<ScoreForm>(), default_value_t = ScoreForm::Reference)]
    score_form: ScoreForm,
    /// Class to explain.
    #[arg(long, value_parser = super::named::<Target>(), default_value_t = Target::Label)]
    target: Target,
    /// Input normalisation: the checkpoint's own, or ImageNet's as the reference code
    /// (default: checkpoint; reference with --compat reference).
    #[arg(long, value_parser = super::named::<Preset>())]
    preprocess: Option<Preset>,
    /// Whose arithmetic to follow where the paper's code departs from the principled
    /// form. `principled`: the model's own forward, and a score over a neuron that
    /// spans tokens divided by their number. `reference`: the authors' code exactly,
    /// quirks included (for MAE: fc_norm applied twice, scores divided by a fixed 196,
    /// an influence search that skips the blocks of chosen layers); it implies
    /// --preprocess reference. For the plain ViT both give the same paths and scores.
    #[arg(long, value_parser = super::named::<Compat>(), default_value_t = Compat::Principled)]
    compat: Compat,
    /// Where a neuron lives (its site's tokens): `cls`; `dist`, DeiT's distillation
    /// token; `patches`, one FFN channel across the patch tokens; `all`, across every
    /// token. Default: the family's (cls; patches for MAE, as the paper's code).
    #[arg(long, value_parser = super::named::<Tokens>())]
    tokens: Option<Tokens>,
    /// The unit of a path: `neuron` (an FFN neuron, the paper's) or `head` (one
    /// attention head's output at the tokens, before the output projection: the
    /// same layer-progressive search, the head scaled from 0 to its value; methods
    /// jas, activation (the head of largest output norm) and random).
    #[arg(long, value_enum, default_value_t = super::Unit::Neuron)]
    unit: super::Unit,
    /// Images processed together, 1 to 1024 (default: on the CPU as many as keep ~8k
    /// token rows per pass; with --gpu as many as the device's free memory holds). A
    /// killed run loses at most the batch in flight; the results are the same
    /// whatever the batch.
    #[arg(long, value_parser = super::in_range(1, 1024))]
    batch: Option<usize>,
    #[command(flatten)]
    labels: super::LabelMap,
    #[command(flatten)]
    sharding: super::Sharding,
}

impl Args {
    /// The job these options ask for.
    fn job(&self) -> PathsJob {
        PathsJob {
            methods: self.method.clone(),
            search: Search {
                top_k: self.top_k,
                beam: self.beam,
                paths: self.paths_per_image,
            },
            seed: self.seed,
            rule: self.integration.with(self.steps),
            form: self.score_form,
            target: self.target,
            preprocess: self.preprocess,
            compat: self.compat,
            tokens: self.tokens,
            unit: self.unit.activation(),
            batch: self.batch,
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut vit = args.run.load()?;
    let job = args.job();
    job.configure(&mut vit)?;
    let needs_labels = job.target == Target::Label;
    let label_map = args.labels.label_map.as_deref();
    let mut set = super::image_set(&args.run.images, &vit, label_map, needs_labels)?;
    let plan = args
        .sharding
        .plan(set.entries.iter().map(|e| e.key.clone()).collect());
    set.entries.retain(|e| plan.mine(&e.key));
    let bar = super::Bar::new();
    let run = job.prepare(&vit, &args.run.model.model, &bar)?;
    let mut out = RecordFile::<PathRecord>::open(&args.out, &run.common.settings())?;
    let inputs: Vec<Input> = set.entries.iter().map(Input::File).collect();
    check_resumed(&out, &inputs, &args.out)?;
    let methods = &run.methods;
    let settings = [
        run.common.settings(),
        vec![("methods", super::names(methods))],
    ]
    .concat();
    let shard = plan.begin(&args.out, Kind::Paths, &settings, |k| {
        done(&out, methods, k)
    })?;
    super::shard::watch(&shard);
    let todo: Vec<Input> = inputs
        .into_iter()
        .filter(|input| !done(&out, methods, input.key()))
        .collect();
    eprintln!(
        "{} images ({} already in {}), {} layers x {} units at {}, {} steps {}, batch {}",
        set.entries.len(),
        set.entries.len() - todo.len(),
        args.out.display(),
        vit.config.layers,
        vit.units(),
        vit.neuron_site(0)
            .to_string()
            .replace("blocks.0.", "blocks.N."),
        args.steps,
        job.rule,
        run.batch
    );
    let tally = super::with_threads(args.run.threads, || run.run(&todo, &mut out, &bar))??;
    shard.finish(|k| done(&out, methods, k))?;
    eprintln!(
        "done: {} images written to {}, {} already there, {} failed",
        tally.written,
        args.out.display(),
        set.entries.len() - todo.len(),
        tally.failed
    );
    // Failure only when there was work and none of it could be done.
    Ok(if tally.failed > 0 && tally.written == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether the image `key` has its records of every method in `out`.
fn done(out: &RecordFile<PathRecord>, methods: &[Method], key: &str) -> bool {
    methods
        .iter()
        .all(|&m| out.contains(&PathRecord::key_of(key, m)))
}
