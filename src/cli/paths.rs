//! `neuronpath paths`: influential neuron paths of every image, resumable.

use anyhow::{bail, Context, Result};
use neuronpath::attribution::{
    Attributor, ImageContext, Integration, Method, NeuronPath, Rule, ScoreForm, Search, Target,
};
use neuronpath::data::{self, ImageEntry, ImageSet, Preset};
use neuronpath::model::{fingerprint, Compat, Tokens, Vit};
use neuronpath::names::Named;
use neuronpath::numeric::{self, argmax};
use neuronpath::record::{PathRecord, Record, RecordFile};
use neuronpath::shards::{Kind, ShardPlan};
use std::path::{Path, PathBuf};
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
    /// Images processed together, 1 to 1024 (default: as many as keep ~8k token rows
    /// per pass). A killed run loses at most the batch in flight; the results are the
    /// same whatever the batch.
    #[arg(long, value_parser = super::in_range(1, 1024))]
    batch: Option<usize>,
    #[command(flatten)]
    labels: super::LabelMap,
    #[command(flatten)]
    sharding: super::Sharding,
}

/// The methods to run: those asked for, or the default for the search.
fn methods(asked: &[Method], search: Search) -> Result<Vec<Method>> {
    let top_k_methods = [Method::Jas, Method::Activation];
    match (asked.is_empty(), search.top_k) {
        (true, 1) => Ok(Method::ALL.to_vec()),
        (true, _) => Ok(top_k_methods.to_vec()),
        (false, 1) => Ok(asked.to_vec()),
        (false, k) => match asked.iter().find(|m| !top_k_methods.contains(m)) {
            Some(m) => bail!(
                "--top-k {k}: only jas and activation find top-K paths, not {}",
                m.name()
            ),
            None => Ok(asked.to_vec()),
        },
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut vit = args.run.model.load()?;
    vit.compat = args.compat;
    if let Some(tokens) = args.tokens {
        if vit.config.rows(tokens).is_empty() {
            bail!("--tokens {}: this model has no such token", tokens.name());
        }
        vit.neuron_tokens = tokens;
    }
    vit.unit = args.unit.activation();
    let search = Search {
        top_k: args.top_k,
        beam: args.beam,
        paths: args.paths_per_image,
    };
    search.check(vit.units())?;
    if args.unit == super::Unit::Head && search != Search::GREEDY {
        bail!("--unit head: head paths are searched greedily (no --top-k, --beam or --paths-per-image)");
    }
    let asked = methods(&args.method, search)?;
    let preprocess = args.preprocess.unwrap_or(match args.compat {
        Compat::Principled => Preset::Checkpoint,
        Compat::Reference => Preset::Reference,
    });
    let mut set = super::image_set(&args.run.images, &vit, args.labels.label_map.as_deref())?;
    let plan = ShardPlan::new(
        args.sharding.shard,
        set.entries.iter().map(|e| e.key.clone()).collect(),
    );
    set.entries.retain(|e| plan.mine(&e.key));
    let rule = args.integration.with(args.steps);
    let probe = Attributor {
        vit: &vit,
        rule,
        form: args.score_form,
    };
    let (methods, skipped): (Vec<Method>, Vec<Method>) =
        asked.iter().partition(|&&m| probe.supports(m));
    if !skipped.is_empty() {
        eprintln!(
            "{}: not defined for this unit, skipped",
            super::names(&skipped)
        );
    }
    if methods.is_empty() {
        bail!("no method left to run for this unit");
    }
    // A head's value is its scale: its paths are scored by the paper's form.
    let form = match args.unit {
        super::Unit::Head => ScoreForm::Paper,
        super::Unit::Neuron => args.score_form,
    };
    let common = shared_fields(&args, &vit, preprocess, rule, form)?;
    let mut out = RecordFile::<PathRecord>::open(&args.out, &common.settings())?;
    check_labels(&out, &set, &args.out)?;
    let methods = &methods;
    let settings = [common.settings(), vec![("methods", super::names(methods))]].concat();
    let shard = plan.begin(&args.out, Kind::Paths, &settings, |k| {
        done(&out, methods, k)
    })?;
    let todo: Vec<&ImageEntry> = set
        .entries
        .iter()
        .filter(|e| !done(&out, methods, &e.key))
        .collect();
    let batch = args.batch.unwrap_or_else(|| {
        (8192 / (vit.config.tokens() * args.steps * args.beam).max(1)).clamp(1, 16)
    });
    let attributor = Attributor {
        vit: &vit,
        rule,
        form,
    };
    let norm = data::normalization(&vit, preprocess);
    eprintln!(
        "{} images ({} already in {}), {} layers x {} units at {}, {} steps {rule}, batch {batch}",
        set.entries.len(),
        set.entries.len() - todo.len(),
        args.out.display(),
        vit.config.layers,
        vit.units(),
        vit.neuron_site(0)
            .to_string()
            .replace("blocks.0.", "blocks.N."),
        args.steps
    );
    let bar = super::progress(todo.len(), "images");
    let (mut written, mut failed) = (0usize, 0usize);
    super::with_threads(args.run.threads, || -> Result<()> {
        for chunk in todo.chunks(batch) {
            let mut ready: Vec<(&ImageEntry, ImageContext)> = Vec::new();
            for entry in chunk {
                match ImageContext::load(&vit, entry, &norm, args.target) {
                    Ok(ctx) => ready.push((entry, ctx)),
                    Err(e) => {
                        bar.suspend(|| eprintln!("skipped {}: {e:#}", entry.path.display()));
                        failed += 1;
                        bar.inc(1);
                    }
                }
            }
            if ready.is_empty() {
                continue;
            }
            let contexts: Vec<&ImageContext> = ready.iter().map(|(_, c)| c).collect();
            let found =
                attributor.find_and_score_with(&contexts, methods, args.seed, search, |i, m| {
                    !out.contains(&PathRecord::key_of(&ready[i].0.key, m))
                });
            for found in found {
                let (entry, ctx) = &ready[found.image];
                let probs = ctx.probabilities(vit.config.classes);
                let predicted = argmax(&probs);
                let image = std::fs::read(&entry.path)
                    .with_context(|| format!("{}: cannot read", entry.path.display()))?;
                out.append(PathRecord {
                    image: entry.key.clone(),
                    label: entry.label,
                    label_name: entry.label.and_then(|l| class_name(&vit, entry, l)),
                    method: found.method,
                    path: found.path,
                    rank: found.rank,
                    score: found.score.score,
                    target: ctx.target,
                    target_prob: probs[ctx.target],
                    predicted,
                    predicted_name: vit.class_name(predicted),
                    predicted_prob: probs[predicted],
                    contribution: found.score.contribution,
                    activation: found.score.activation,
                    gradient: found.score.gradient,
                    image_fingerprint: Some(numeric::fingerprint(&image)),
                    ..common.clone()
                })?;
            }
            written += ready.len();
            bar.inc(ready.len() as u64);
        }
        Ok(())
    })??;
    bar.finish_and_clear();
    shard.finish(|k| done(&out, methods, k))?;
    eprintln!(
        "done: {written} images written to {}, {} already there, {failed} failed",
        args.out.display(),
        set.entries.len() - todo.len()
    );
    // Failure only when there was work and none of it could be done.
    Ok(if failed > 0 && written == 0 {
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

/// The fields every record of this run shares, which a resumed file must match.
fn shared_fields(
    args: &Args,
    vit: &Vit,
    preprocess: Preset,
    rule: Integration,
    form: ScoreForm,
) -> Result<PathRecord> {
    Ok(PathRecord {
        image: String::new(),
        label: None,
        label_name: None,
        method: Method::Jas,
        path: NeuronPath(vec![]),
        beam: args.beam,
        rank: 0,
        neurons: vit.units(),
        score: 0.0,
        target: 0,
        target_source: args.target,
        target_prob: 0.0,
        predicted: 0,
        predicted_name: None,
        predicted_prob: 0.0,
        activation: vec![],
        gradient: vec![],
        contribution: vec![],
        integration: rule.rule(),
        steps: rule.steps(),
        score_form: form,
        model: args.run.model.model.display().to_string(),
        preprocess,
        sites: (0..vit.config.layers).map(|l| vit.neuron_site(l)).collect(),
        compat: args.compat,
        model_fingerprint: Some(fingerprint(&args.run.model.model, vit)?),
        image_fingerprint: None,
        seed: Some(args.seed),
    })
}

/// The name of class `label`: the model's, else the image's class folder.
fn class_name(vit: &Vit, entry: &ImageEntry, label: usize) -> Option<String> {
    vit.class_name(label)
        .or_else(|| entry.key.split('/').next().map(String::from))
}

/// Refuses to resume when an image's label in the file is not its label now (the
/// folders were renamed, or labels were assigned otherwise).
fn check_labels(out: &RecordFile<PathRecord>, set: &ImageSet, file: &Path) -> Result<()> {
    for entry in &set.entries {
        let old = Method::ALL
            .iter()
            .find_map(|&m| out.get(&PathRecord::key_of(&entry.key, m)));
        if let Some(old) = old.filter(|old| old.label != entry.label) {
            bail!(
                "{}: {} has label {:?} ({}) there, but {:?} in this run (class folders now match the model's class names, or were renamed); write to another file to start afresh",
                file.display(),
                entry.key,
                old.label,
                old.label_name.as_deref().unwrap_or("-"),
                entry.label
            );
        }
    }
    Ok(())
}
