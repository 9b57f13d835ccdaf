//! The zero-shot classifier of a CLIP tower: class rows computed from class names
//! with the checkpoint's own text tower and tokenizer (`--classes`), or given as
//! zero-shot classifiers are usually shipped, a `.npy` of class text embeddings (one
//! row per class); a logit scale; class names.

use super::text::TextTower;
use super::tokenizer::ClipTokenizer;
use super::{LoadOptions, DEFAULT_PROMPT};
use crate::model::npy;
use crate::model::vit::ZeroShot;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// CLIP's released `logit_scale.exp()`.
const CLIP_SCALE: f32 = 100.0;
/// Prompts embedded in one pass of the text tower (bounds its memory).
const BATCH: usize = 256;

/// A checkpoint's text side: its tower, its logit scale (the multiplier), where its
/// tokenizer may lie, and the EOT id its config names (Hugging Face).
pub(super) struct Text {
    pub tower: TextTower,
    pub scale: f32,
    /// The folder whose `tokenizer.json` is the default vocabulary.
    pub folder: PathBuf,
    pub eot: Option<u32>,
}

/// The classifier the options name for an embedding of width `embedding`, and its
/// class names when given: rows from `--classes` through `text`, or `--classifier`.
pub(super) fn classifier(
    options: &LoadOptions,
    embedding: usize,
    model: &Path,
    text: Option<Text>,
) -> Result<(ZeroShot, Option<Vec<String>>)> {
    let from_file = |scale| read(options, embedding, scale, model);
    match (&options.classes, &options.classifier, text) {
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
            let scale = options.logit_scale.unwrap_or(text.scale);
            check_scale(scale, model)?;
            Ok((ZeroShot { text: rows, scale }, Some(classes.clone())))
        }
        (None, Some(_), text) => from_file(text.map(|t| t.scale)),
        (None, None, Some(_)) => bail!(
            "{}: a CLIP model classifies zero-shot: pass --classes a,b,c (class rows from its own text tower) or --classifier text.npy (class text embeddings, one row per class)",
            model.display()
        ),
        (None, None, None) => bail!(
            "{}: a CLIP vision tower classifies zero-shot: pass --classifier text.npy (class text embeddings, one row per class)",
            model.display()
        ),
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
    let tokenizer = open_tokenizer(tokenizer, &text.folder)?;
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
    if let Some(eot) = text
        .eot
        .filter(|&e| e != 2 && Some(&e) != sequences[0].last())
    {
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

/// `--tokenizer` (a file, or a folder's `tokenizer.json`), else the checkpoint
/// folder's `tokenizer.json`, else OpenAI's vocabulary.
fn open_tokenizer(given: Option<&Path>, folder: &Path) -> Result<ClipTokenizer> {
    match given {
        Some(p) if p.is_dir() => ClipTokenizer::open(&p.join("tokenizer.json")),
        Some(p) => ClipTokenizer::open(p),
        None if folder.join("tokenizer.json").exists() => {
            ClipTokenizer::open(&folder.join("tokenizer.json"))
        }
        None => Ok(ClipTokenizer::bundled()),
    }
}

/// A checkpoint's `logit_scale` (stored as its log, `[]` or `[1]`): the multiplier.
pub(super) fn logit_scale(t: &mut super::Tensors) -> Result<f32> {
    let shape = t.shape("logit_scale")?.to_vec();
    if shape.iter().product::<usize>() != 1 || shape.len() > 1 {
        bail!(
            "{}: tensor logit_scale has shape {shape:?}, expected [] or [1]",
            t.file().display()
        );
    }
    Ok(t.take("logit_scale", &shape)?[0].exp())
}

fn check_scale(scale: f32, model: &Path) -> Result<()> {
    if !(scale.is_finite() && scale > 0.0) {
        bail!(
            "{}: the logit scale must be a positive number, not {scale}",
            model.display()
        );
    }
    Ok(())
}

/// `--classifier`'s rows; the scale: `--logit-scale`, a `logit_scale.npy` beside the
/// classifier, the checkpoint's, CLIP's 100.
fn read(
    options: &LoadOptions,
    embedding: usize,
    checkpoint_scale: Option<f32>,
    model: &Path,
) -> Result<(ZeroShot, Option<Vec<String>>)> {
    let path = options.classifier.as_deref().expect("a classifier");
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
    let scale = match options.logit_scale {
        Some(s) => s,
        None => beside_scale(path)?
            .or(checkpoint_scale)
            .unwrap_or(CLIP_SCALE),
    };
    check_scale(scale, model)?;
    let names = options
        .class_names
        .as_deref()
        .map(|p| class_names(p, classes))
        .transpose()?;
    Ok((ZeroShot { text, scale }, names))
}

/// Class options are for zero-shot models only.
pub(super) fn refuse_classifier(options: &LoadOptions, model: &Path) -> Result<()> {
    let given = [
        ("--classifier", options.classifier.is_some()),
        ("--classes", options.classes.is_some()),
        ("--logit-scale", options.logit_scale.is_some()),
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

/// A 0-d `logit_scale.npy` beside the classifier, when there is one.
fn beside_scale(classifier: &Path) -> Result<Option<f32>> {
    let path = classifier.with_file_name("logit_scale.npy");
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
