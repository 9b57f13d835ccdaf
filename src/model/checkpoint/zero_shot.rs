//! The zero-shot classifier of a CLIP tower, as zero-shot classifiers are usually
//! shipped: a `.npy` of class text embeddings (one row per class), a logit scale,
//! optional class names.

use super::LoadOptions;
use crate::model::npy;
use crate::model::vit::ZeroShot;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// CLIP's released `logit_scale.exp()`.
const CLIP_SCALE: f32 = 100.0;

/// The classifier named by `options`, for an embedding of width `embedding`, and
/// its class names when given.
pub(super) fn read(
    options: &LoadOptions,
    embedding: usize,
    model: &Path,
) -> Result<(ZeroShot, Option<Vec<String>>)> {
    let Some(path) = &options.classifier else {
        bail!(
            "{}: a CLIP vision tower classifies zero-shot: pass --classifier text.npy (class text embeddings, one row per class)",
            model.display()
        );
    };
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
        None => beside_scale(path)?.unwrap_or(CLIP_SCALE),
    };
    if !(scale.is_finite() && scale > 0.0) {
        bail!("the logit scale must be a positive number, not {scale}");
    }
    let names = options
        .class_names
        .as_deref()
        .map(|p| class_names(p, classes))
        .transpose()?;
    Ok((ZeroShot { text, scale }, names))
}

/// `--classifier`, `--logit-scale` and `--class-names` are for zero-shot models only.
pub(super) fn refuse_classifier(options: &LoadOptions, model: &Path) -> Result<()> {
    let given = [
        ("--classifier", options.classifier.is_some()),
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

fn read_npy(path: &Path) -> Result<npy::Array> {
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
