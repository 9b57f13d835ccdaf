//! The zero-shot classifier of a CLIP tower: class rows computed from class names
//! with the checkpoint's own text tower and tokenizer (`--classes`), or given as
//! zero-shot classifiers are usually shipped, a `.npy` of class text embeddings (one
//! row per class); a logit scale; class names.

use super::sentencepiece::SiglipTokenizer;
use super::text::{Reads, TextTower};
use super::tokenizer::ClipTokenizer;
use super::{LoadOptions, DEFAULT_PROMPT};
use crate::model::family::Probability;
use crate::model::npy;
use crate::model::vit::ZeroShot;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// CLIP's released `logit_scale.exp()`.
const CLIP_SCALE: f32 = 100.0;
/// Prompts embedded in one pass of the text tower (bounds its memory).
const BATCH: usize = 256;

/// A checkpoint's text side: its tower, its logit scale and bias, where its
/// tokenizer may lie, and the EOT id its config names (Hugging Face).
pub(super) struct Text {
    pub tower: TextTower,
    pub calibration: Calibration,
    /// The folder whose `tokenizer.json` (CLIP) or `spiece.model` (SigLIP) is the
    /// default vocabulary.
    pub folder: PathBuf,
    pub eot: Option<u32>,
}

/// What turns cosines into logits: `scale * cos + bias`, as a checkpoint stores
/// them (CLIP's `logit_scale`, SigLIP's `logit_scale` and `logit_bias`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Calibration {
    /// The multiplier (`logit_scale.exp()`).
    pub scale: Option<f32>,
    pub bias: Option<f32>,
}

/// The classifier the options name for an embedding of width `embedding`, and its
/// class names when given: rows from `--classes` through `text`, or `--classifier`.
/// Its logits become `probability`'s probabilities: a softmax's take no bias (none
/// changes them), a sigmoid's need one.
pub(super) fn classifier(
    options: &LoadOptions,
    embedding: usize,
    model: &Path,
    text: Option<Text>,
    probability: Probability,
) -> Result<(ZeroShot, Option<Vec<String>>)> {
    let stored = text.as_ref().map(|t| t.calibration).unwrap_or_default();
    let (text, names, beside) = match (&options.classes, &options.classifier, text) {
        (Some(_), Some(_), _) => bail!("--classes and --classifier both give the classes: pass one"),
        (Some(_), None, None) => bail!(
            "{}: --classes needs the checkpoint's text tower, which this file does not hold: pass --classifier text.npy",
            model.display()
        ),
        (Some(classes), None, Some(text)) => {
            let rows = class_rows(&text, classes, &options.prompts, options.tokenizer.as_deref())?;
            if rows.iter().any(|v| !v.is_finite()) {
                bail!("{}: the text tower's embeddings of the classes are not finite", model.display());
            }
            (rows, Some(classes.clone()), Calibration::default())
        }
        (None, Some(path), _) => {
            let (rows, names) = read(options, embedding, path)?;
            (rows, names, Calibration::beside(path)?)
        }
        (None, None, Some(_)) => bail!(
            "{}: a CLIP model classifies zero-shot: pass --classes a,b,c (class rows from its own text tower) or --classifier text.npy (class text embeddings, one row per class)",
            model.display()
        ),
        (None, None, None) => bail!(
            "{}: a CLIP vision tower classifies zero-shot: pass --classifier text.npy (class text embeddings, one row per class)",
            model.display()
        ),
    };
    let given = Calibration {
        scale: options.logit_scale,
        bias: options.logit_bias,
    };
    let (scale, bias) = given.or(beside).or(stored).resolve(probability, model)?;
    Ok((ZeroShot { text, scale, bias }, names))
}

impl Calibration {
    /// Each value of `self`, else of `other`.
    fn or(self, other: Calibration) -> Calibration {
        Calibration {
            scale: self.scale.or(other.scale),
            bias: self.bias.or(other.bias),
        }
    }

    /// `logit_scale.npy` and `logit_bias.npy` beside a classifier, when there.
    fn beside(classifier: &Path) -> Result<Calibration> {
        Ok(Calibration {
            scale: beside(classifier, "logit_scale.npy")?,
            bias: beside(classifier, "logit_bias.npy")?,
        })
    }

    /// The scale and bias: a softmax's scale defaults to CLIP's 100 and takes no
    /// bias; a sigmoid's (SigLIP's) have no default.
    fn resolve(self, probability: Probability, model: &Path) -> Result<(f32, f32)> {
        let (scale, bias) = match probability {
            Probability::Softmax => {
                if let Some(bias) = self.bias {
                    bail!("{}: a logit bias ({bias}) changes no softmax probability: --logit-bias and logit_bias.npy are for SigLIP, whose classes each have a sigmoid", model.display());
                }
                (self.scale.unwrap_or(CLIP_SCALE), 0.0)
            }
            Probability::Sigmoid => {
                let missing = |what: &str, file: &str| {
                    anyhow::anyhow!("{}: a sigmoid per class needs the logit {what} the model was trained with, which the checkpoint does not hold: pass --logit-{what} (or a {file} beside the classifier)", model.display())
                };
                let scale = self
                    .scale
                    .ok_or_else(|| missing("scale", "logit_scale.npy"))?;
                let bias = self.bias.ok_or_else(|| missing("bias", "logit_bias.npy"))?;
                (scale, bias)
            }
        };
        if !(scale.is_finite() && scale > 0.0) {
            bail!(
                "{}: the logit scale must be a positive number, not {scale}",
                model.display()
            );
        }
        if !bias.is_finite() {
            bail!(
                "{}: the logit bias must be a number, not {bias}",
                model.display()
            );
        }
        Ok((scale, bias))
    }
}

/// Per class, the unit-length mean of its prompts' unit embeddings (open_clip's
/// `build_zero_shot_classifier`; with one prompt, that prompt's embedding).
fn class_rows(
    text: &Text,
    classes: &[String],
    prompts: &[String],
    tokenizer: Option<&Path>,
) -> Result<Vec<f32>> {
    let tokenizer = Tokenizer::open(text.tower.reads(), tokenizer, &text.folder)?;
    let (vocab, context) = (text.tower.vocab(), text.tower.context());
    if tokenizer.vocab_size() != vocab {
        bail!(
            "{}: a vocabulary of {} tokens, but the text tower's token embedding has {vocab} rows: pass the checkpoint's own with --tokenizer",
            tokenizer.source(),
            tokenizer.vocab_size()
        );
    }
    let defaults = [DEFAULT_PROMPT.to_string()];
    let prompts = if prompts.is_empty() {
        &defaults[..]
    } else {
        prompts
    };
    if let Some(p) = prompts.iter().find(|p| p.matches("{}").count() != 1) {
        bail!("--prompt {p:?}: a prompt needs exactly one {{}} where the class name goes");
    }
    if classes.is_empty() || classes.iter().any(|c| c.trim().is_empty()) {
        bail!("--classes: every class needs a name");
    }
    let sequences = classes
        .iter()
        .flat_map(|c| prompts.iter().map(move |p| p.replace("{}", c)))
        .map(|t| tokenizer.encode(&t, context))
        .collect::<Result<Vec<_>>>()?;
    if let Some(eot) = text.eot.filter(|&e| e != 2 && e != tokenizer.eos()) {
        bail!(
            "{}: the config's eos_token_id {eot} is not the end token of the vocabulary: pass the checkpoint's own with --tokenizer",
            tokenizer.source()
        );
    }
    let e = text.tower.embedding();
    let embedded: Vec<f32> = sequences
        .chunks(BATCH)
        .flat_map(|batch| text.tower.embed(batch))
        .collect();
    let mut rows = Vec::with_capacity(classes.len() * e);
    for class in embedded.chunks_exact(prompts.len() * e) {
        let mut mean = vec![0f32; e];
        for prompt in class.chunks_exact(e) {
            mean.iter_mut().zip(prompt).for_each(|(m, p)| *m += p);
        }
        mean.iter_mut().for_each(|m| *m /= prompts.len() as f32);
        let length = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
        rows.extend(mean.iter().map(|v| v / length));
    }
    Ok(rows)
}

/// A text tower's tokenizer: CLIP's BPE for a tower that reads the EOT token,
/// SigLIP's SentencePiece model for one that reads the last padded position.
enum Tokenizer {
    Clip(ClipTokenizer),
    Siglip(SiglipTokenizer),
}

impl Tokenizer {
    /// `--tokenizer` (a file, or a folder holding the tokenizer's file), else the
    /// checkpoint folder's; for CLIP, else OpenAI's vocabulary.
    fn open(reads: Reads, given: Option<&Path>, folder: &Path) -> Result<Tokenizer> {
        let file = match reads {
            Reads::Eot => "tokenizer.json",
            Reads::LastPadded => "spiece.model",
        };
        let path = match given {
            Some(p) if p.is_dir() => Some(p.join(file)),
            Some(p) => Some(p.to_path_buf()),
            None => Some(folder.join(file)).filter(|p| p.exists()),
        };
        Ok(match (reads, path) {
            (Reads::Eot, Some(p)) => Tokenizer::Clip(ClipTokenizer::open(&p)?),
            (Reads::Eot, None) => Tokenizer::Clip(ClipTokenizer::bundled()),
            (Reads::LastPadded, Some(p)) => Tokenizer::Siglip(SiglipTokenizer::open(&p)?),
            (Reads::LastPadded, None) => bail!(
                "{}: no spiece.model, the SentencePiece vocabulary of SigLIP's text tower: pass it with --tokenizer, or --classifier text.npy",
                folder.display()
            ),
        })
    }

    fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Clip(t) => t.vocab_size(),
            Tokenizer::Siglip(t) => t.vocab_size(),
        }
    }

    fn source(&self) -> &str {
        match self {
            Tokenizer::Clip(t) => t.source(),
            Tokenizer::Siglip(t) => t.source(),
        }
    }

    fn eos(&self) -> u32 {
        match self {
            Tokenizer::Clip(t) => t.eot(),
            Tokenizer::Siglip(t) => t.eos(),
        }
    }

    /// The ids the tower reads, at most `context`: CLIP's up to its EOT, SigLIP's
    /// padded to `context`.
    fn encode(&self, text: &str, context: usize) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Clip(t) => t.encode(text, context),
            Tokenizer::Siglip(t) => t.encode(text, context),
        }
    }
}

/// A checkpoint's `logit_scale` (stored as its log) and, when it has one, its
/// `logit_bias` (SigLIP), each `[]` or `[1]`.
pub(super) fn calibration(t: &mut super::Tensors) -> Result<Calibration> {
    let bias = match t.contains("logit_bias") {
        true => Some(scalar(t, "logit_bias")?),
        false => None,
    };
    Ok(Calibration {
        scale: Some(scalar(t, "logit_scale")?.exp()),
        bias,
    })
}

/// A one-number tensor, `[]` or `[1]`.
fn scalar(t: &mut super::Tensors, name: &str) -> Result<f32> {
    let shape = t.shape(name)?.to_vec();
    if shape.iter().product::<usize>() != 1 || shape.len() > 1 {
        bail!(
            "{}: tensor {name} has shape {shape:?}, expected [] or [1]",
            t.file().display()
        );
    }
    Ok(t.take(name, &shape)?[0])
}

/// `--classifier`'s rows (`path`), and the class names given for them.
fn read(
    options: &LoadOptions,
    embedding: usize,
    path: &Path,
) -> Result<(Vec<f32>, Option<Vec<String>>)> {
    let array = read_npy(path)?;
    let [classes, width] = array.shape[..] else {
        bail!(
            "{}: expected a [classes, embedding] array, found shape {:?}",
            path.display(),
            array.shape
        );
    };
    if width != embedding || classes == 0 {
        bail!(
            "{}: {classes} rows of width {width}, but the model's embedding has width {embedding}",
            path.display()
        );
    }
    let text = array.to_f32().with_context(|| path.display().to_string())?;
    if text.iter().any(|v| !v.is_finite()) {
        bail!("{}: holds a non-finite value", path.display());
    }
    let names = options
        .class_names
        .as_deref()
        .map(|p| class_names(p, classes))
        .transpose()?;
    Ok((text, names))
}

/// Class options are for zero-shot models only.
pub(super) fn refuse_classifier(options: &LoadOptions, model: &Path) -> Result<()> {
    let given = [
        ("--classifier", options.classifier.is_some()),
        ("--classes", options.classes.is_some()),
        ("--logit-scale", options.logit_scale.is_some()),
        ("--logit-bias", options.logit_bias.is_some()),
        ("--class-names", options.class_names.is_some()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
        bail!(
            "{}: {flag} is for a CLIP vision tower's zero-shot classifier; this model has its own head",
            model.display()
        );
    }
    Ok(())
}

pub(super) fn read_npy(path: &Path) -> Result<npy::Array> {
    let bytes = crate::files::read(path, crate::files::WHOLE)?;
    npy::parse_npy(&bytes).with_context(|| path.display().to_string())
}

/// A one-number `.npy` called `name` beside the classifier, when there is one.
fn beside(classifier: &Path, name: &str) -> Result<Option<f32>> {
    let path = classifier.with_file_name(name);
    if !path.exists() {
        return Ok(None);
    }
    let values = read_npy(&path)?
        .to_f32()
        .with_context(|| path.display().to_string())?;
    match values[..] {
        [v] => Ok(Some(v)),
        _ => bail!(
            "{}: expected one number, found {}",
            path.display(),
            values.len()
        ),
    }
}

/// One name per line, as many as the classifier has rows.
fn class_names(path: &Path, classes: usize) -> Result<Vec<String>> {
    let text = crate::files::read_text(path)?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != classes {
        bail!(
            "{}: {} names for {classes} classes",
            path.display(),
            names.len()
        );
    }
    Ok(names)
}
