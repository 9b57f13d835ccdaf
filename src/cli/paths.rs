//! `neuronpath paths`: influential neuron paths of every image, resumable.

use anyhow::{bail, Result};
use neuronpath::attribution::{
    Attributor, ImageContext, Integration, Method, ScoreForm, Search, Target,
};
use neuronpath::data::{self, ImageEntry, ImageSet, Preset};
use neuronpath::model::Compat;
use neuronpath::numeric::argmax;
use neuronpath::record::{PathRecord, RecordFile};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Rule {
    /// Left Riemann sum, alpha = k/m, k = 0..m-1: identical to the reference code.
    LeftRiemann,
    /// Gauss-Legendre quadrature: the same integral with far fewer steps (fast mode).
    GaussLegendre,
}

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
    #[arg(long, value_enum, value_delimiter = ',')]
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
    /// Integration steps m (points, for Gauss-Legendre).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Integration rule.
    #[arg(long, value_enum, default_value_t = Rule::LeftRiemann)]
    integration: Rule,
    /// How per-neuron attributions combine into the path score.
    #[arg(long, value_enum, default_value_t = ScoreForm::Reference)]
    score_form: ScoreForm,
    /// Class to explain.
    #[arg(long, value_enum, default_value_t = Target::Label)]
    target: Target,
    /// Input normalisation: the checkpoint's own, or ImageNet's as the reference code
    /// (default: checkpoint; reference with --compat reference).
    #[arg(long, value_enum)]
    preprocess: Option<Preset>,
    /// Whose arithmetic to follow where the paper's code departs from the principled
    /// form. `principled`: the model's own forward, and a score over a neuron that
    /// spans tokens divided by their number. `reference`: the authors' code exactly,
    /// quirks included (for MAE: fc_norm applied twice, scores divided by a fixed 196,
    /// an influence search that skips the blocks of chosen layers); it implies
    /// --preprocess reference. For the plain ViT both give the same paths and scores.
    #[arg(long, default_value = "principled", value_parser = super::compat_parser())]
    compat: Compat,
    /// Images processed together (default: as many as keep ~8k token rows per pass).
    /// A killed run loses at most the batch in flight.
    #[arg(long)]
    batch: Option<usize>,
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
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let mut vit = args.run.model.load()?;
    vit.compat = args.compat;
    let search = Search {
        top_k: args.top_k,
        beam: args.beam,
        paths: args.paths_per_image,
    };
    search.check(vit.config.intermediate)?;
    let methods = &methods(&args.method, search)?;
    let preprocess = args.preprocess.unwrap_or(match args.compat {
        Compat::Principled => Preset::Checkpoint,
        Compat::Reference => Preset::Reference,
    });
    let sites: Vec<_> = (0..vit.config.layers).map(|l| vit.neuron_site(l)).collect();
    let set = ImageSet::open(&args.run.images)?;
    let mut out = RecordFile::<PathRecord>::open(&args.out)?;
    let todo: Vec<&ImageEntry> = set
        .entries
        .iter()
        .filter(|e| {
            methods
                .iter()
                .any(|m| !out.contains(&PathRecord::key_of(&e.key, m.name())))
        })
        .collect();
    let rule = match args.integration {
        Rule::LeftRiemann => Integration::LeftRiemann(args.steps),
        Rule::GaussLegendre => Integration::GaussLegendre(args.steps),
    };
    let batch = args
        .batch
        .unwrap_or_else(|| (8192 / (vit.config.tokens() * args.steps * args.beam)).clamp(1, 16))
        .max(1);
    let attributor = Attributor {
        vit: &vit,
        rule,
        form: args.score_form,
    };
    let norm = data::normalization(&vit, preprocess);
    let model_name = args.run.model.model.display().to_string();
    eprintln!(
        "{} images ({} already in {}), {} layers x {} neurons at {}, {} steps {rule}, batch {batch}",
        set.entries.len(),
        set.entries.len() - todo.len(),
        args.out.display(),
        vit.config.layers,
        vit.config.intermediate,
        vit.neuron_site(0).to_string().replace("blocks.0.", "blocks.N."),
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
                    !out.contains(&PathRecord::key_of(&ready[i].0.key, m.name()))
                });
            for found in found {
                let (entry, ctx) = &ready[found.image];
                let probs = ctx.probabilities(vit.config.classes);
                let predicted = argmax(&probs);
                out.append(&PathRecord {
                    image: entry.key.clone(),
                    label: entry.label,
                    label_name: entry.label.and_then(|l| set.classes.get(l).cloned()),
                    method: found.method.name().into(),
                    path: found.path,
                    beam: if found.method == Method::Jas {
                        args.beam
                    } else {
                        1
                    },
                    rank: found.rank,
                    neurons: vit.config.intermediate,
                    score: found.score.score,
                    target: ctx.target,
                    target_source: args.target.name().into(),
                    target_prob: probs[ctx.target],
                    predicted,
                    predicted_name: vit
                        .class_name(predicted)
                        .or_else(|| set.classes.get(predicted).cloned()),
                    predicted_prob: probs[predicted],
                    contribution: found.score.contribution,
                    activation: found.score.activation,
                    gradient: found.score.gradient,
                    integration: rule.name().into(),
                    steps: rule.steps(),
                    score_form: args.score_form.name().into(),
                    model: model_name.clone(),
                    preprocess: preprocess.name().into(),
                    sites: sites.clone(),
                    compat: args.compat,
                })?;
            }
            written += ready.len();
            bar.inc(ready.len() as u64);
        }
        Ok(())
    })??;
    bar.finish_and_clear();
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
