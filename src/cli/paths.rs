//! `neuronpath paths`: influential neuron paths of every image, resumable.

use super::ModelArgs;
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use neuronpath::attribution::{jas, Attributor, ImageContext, Integration, ScoreForm};
use neuronpath::data::{self, ImageEntry, ImageSet, Preset};
use neuronpath::model::backward::softmax;
use neuronpath::model::Vit;
use neuronpath::record::{PathRecord, PathsFile};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Layer-progressive Joint Attribution Score search (the paper's method).
    Jas,
    /// Largest clean CLS activation per layer (the paper's baseline).
    Activation,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Jas => "jas",
            Method::Activation => "activation",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The ground-truth class from the image's folder (the reference code's choice).
    Label,
    /// The class the model predicts for the clean image.
    Predicted,
}

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
    model: ModelArgs,
    /// An image file, or an ImageFolder tree (one sub-folder per class, class index =
    /// sorted folder order). JPEG and PNG.
    #[arg(long, default_value = super::DEFAULT_IMAGES)]
    images: PathBuf,
    /// Output JSON-lines file, one record per image and method. Rerunning with the
    /// same file resumes: records already there are kept and skipped.
    #[arg(long, default_value = "out/paths.jsonl")]
    out: PathBuf,
    /// Methods to run, comma-separated; every path is scored with the same JAS.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Method::Jas, Method::Activation])]
    method: Vec<Method>,
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
    /// Input normalisation: the checkpoint's own, or ImageNet's as the reference code.
    #[arg(long, value_enum, default_value_t = Preset::Checkpoint)]
    preprocess: Preset,
    /// Images processed together (default: as many as keep ~8k token rows per pass).
    /// A killed run loses at most the batch in flight.
    #[arg(long)]
    batch: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let vit = args.model.load()?;
    let set = ImageSet::open(&args.images)?;
    let mut out = PathsFile::open(&args.out)?;
    let methods = &args.method;
    let todo: Vec<&ImageEntry> = set
        .entries
        .iter()
        .filter(|e| methods.iter().any(|m| !out.contains(&e.key, m.name())))
        .collect();
    let rule = match args.integration {
        Rule::LeftRiemann => Integration::LeftRiemann(args.steps),
        Rule::GaussLegendre => Integration::GaussLegendre(args.steps),
    };
    let batch = args
        .batch
        .unwrap_or_else(|| (8192 / (vit.config.tokens() * args.steps)).clamp(1, 16))
        .max(1);
    let attributor = Attributor {
        vit: &vit,
        rule,
        form: args.score_form,
    };
    let model_name = args.model.model.display().to_string();
    eprintln!(
        "{} images ({} already in {}), {} layers x {} neurons, {} steps {rule}, batch {batch}",
        set.entries.len(),
        set.entries.len() - todo.len(),
        args.out.display(),
        vit.config.layers,
        vit.config.intermediate,
        args.steps
    );
    let bar = ProgressBar::new(todo.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  ETA {eta}  {msg}")
            .expect("valid template"),
    );
    let (mut written, mut failed) = (0usize, 0usize);
    super::with_threads(args.threads, || -> Result<()> {
        for chunk in todo.chunks(batch) {
            let mut ready: Vec<(&ImageEntry, ImageContext)> = Vec::new();
            for entry in chunk {
                match prepare(&vit, entry, &args) {
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
            let jas_paths = if methods.contains(&Method::Jas) {
                attributor.locate(&contexts)
            } else {
                vec![]
            };
            let mut items: Vec<(usize, Method, Vec<usize>)> = Vec::new();
            for (i, (entry, ctx)) in ready.iter().enumerate() {
                for &m in methods {
                    if out.contains(&entry.key, m.name()) {
                        continue;
                    }
                    let path = match m {
                        Method::Jas => jas_paths[i].clone(),
                        Method::Activation => jas::activation_path(&ctx.clean),
                    };
                    items.push((i, m, path));
                }
            }
            let scored: Vec<(&ImageContext, &[usize])> = items
                .iter()
                .map(|(i, _, p)| (contexts[*i], p.as_slice()))
                .collect();
            let scores = attributor.score(&scored);
            for ((i, m, path), score) in items.iter().zip(scores) {
                let (entry, ctx) = &ready[*i];
                let probs = softmax(&ctx.clean.logits, vit.config.classes);
                let predicted = argmax(&probs);
                let name = |c: usize| {
                    vit.class_names
                        .as_ref()
                        .map(|n| n[c].clone())
                        .or_else(|| set.classes.get(c).cloned())
                };
                out.append(&PathRecord {
                    image: entry.key.clone(),
                    label: entry.label,
                    label_name: entry.label.and_then(|l| set.classes.get(l).cloned()),
                    method: m.name().into(),
                    path: path.clone(),
                    score: score.score,
                    target: ctx.target,
                    target_source: if args.target == Target::Label {
                        "label"
                    } else {
                        "predicted"
                    }
                    .into(),
                    target_prob: probs[ctx.target],
                    predicted,
                    predicted_name: name(predicted),
                    predicted_prob: probs[predicted],
                    contribution: score.contributions(),
                    activation: score.activation,
                    gradient: score.gradient,
                    integration: match rule {
                        Integration::LeftRiemann(_) => "left-riemann",
                        Integration::GaussLegendre(_) => "gauss-legendre",
                    }
                    .into(),
                    steps: rule.steps(),
                    score_form: format!("{:?}", args.score_form).to_lowercase(),
                    model: model_name.clone(),
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

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

fn prepare(vit: &Vit, entry: &ImageEntry, args: &Args) -> Result<ImageContext> {
    let pixels = data::load_image(&entry.path, vit, &data::normalization(vit, args.preprocess))?;
    let clean = vit.clean_forward(&pixels);
    if let Some(i) = clean.logits.iter().position(|v| !v.is_finite()) {
        bail!(
            "the model's logit {i} is {} for this image",
            clean.logits[i]
        );
    }
    let target = match args.target {
        Target::Predicted => argmax(&clean.logits),
        Target::Label => match entry.label {
            Some(l) if l < vit.config.classes => l,
            Some(l) => bail!(
                "label {l} is outside the model's {} classes",
                vit.config.classes
            ),
            None => bail!("no label (the image is not in a class folder): use --target predicted"),
        },
    };
    Ok(ImageContext { clean, target })
}
