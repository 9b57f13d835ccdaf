//! The paper's experiments on found paths: what happens to the prediction when
//! path neurons are removed or enhanced (`manipulate`), which neurons each class's
//! paths prefer (`stats`), and how well a class keeps its accuracy when only its
//! preferred neurons survive (`prune`).

pub mod manipulate;
pub mod prune;
pub mod stats;

use crate::attribution::ImageContext;
use crate::model::{Action, Vit};
use crate::numeric::argmax;
use crate::record::PathRecord;
use anyhow::{bail, Result};
use std::collections::HashSet;
use std::path::Path;

/// Checks that an experiment runs the model and the images its paths were found
/// on: the records' model fingerprint against `model` (this model's), and each
/// image file's bytes below `images` against its record's fingerprint. Records of
/// older versions carry neither; for them the clean probability is compared
/// instead (see [`check_clean_prob`]).
pub fn check_inputs(records: &[PathRecord], model: &str, images: &Path, file: &Path) -> Result<()> {
    check_model(records, model, file)?;
    check_images(records, images, file)
}

/// Checks that each image file below `images` named by `records` (from `file`)
/// has the bytes its record's fingerprint says (records of older versions carry
/// none); a missing or unreadable image is left to where it is used.
pub fn check_images(records: &[PathRecord], images: &Path, file: &Path) -> Result<()> {
    let mut seen = HashSet::new();
    for r in records.iter().filter(|r| seen.insert(&r.image)) {
        let Some(want) = &r.image_fingerprint else {
            continue;
        };
        let path = crate::data::folder::path_of(images, &r.image);
        // A missing or unreadable image is reported (and skipped) where it is used.
        let Ok(bytes) = crate::files::read(&path, crate::files::IMAGE) else {
            continue;
        };
        if &crate::numeric::fingerprint(&bytes) != want {
            bail!(
                "{}: not the image the paths in {} were found on (its content differs); pass the --images folder given to `paths`",
                path.display(),
                file.display()
            );
        }
    }
    Ok(())
}

/// Checks that the records' model fingerprint (where they carry one) is `model`.
pub fn check_model(records: &[PathRecord], model: &str, file: &Path) -> Result<()> {
    if let Some(r) = records
        .iter()
        .find(|r| r.model_fingerprint.as_ref().is_some_and(|fp| fp != model))
    {
        bail!(
            "{}: the paths were found on another model ({}, fingerprint {}) than this one (fingerprint {model}); pass the --model the paths were found with",
            file.display(),
            r.model,
            r.model_fingerprint.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// Checks that `image`'s clean probability of its target is the one `record` says:
/// another model, image or preprocessing would differ.
pub fn check_clean_prob(vit: &Vit, image: &ImageContext, record: &PathRecord) -> Result<()> {
    let now = Outcome::clean(vit, image).prob;
    if (now - record.target_prob).abs() > 1e-4 {
        bail!(
            "{}: p(target {}) of the clean image is {now} here but {} in the path record: another model, image or preprocessing than the paths were found with",
            record.image,
            record.target,
            record.target_prob
        );
    }
    Ok(())
}

/// A multiplicative edit of neurons: per layer, `(neuron, factor)` pairs.
pub type NeuronEdit = Vec<Vec<(usize, f32)>>;

/// The prediction of one image under an edit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// Probability of the image's target class.
    pub prob: f32,
    pub predicted: usize,
}

impl Outcome {
    /// The prediction of the unedited model.
    pub fn clean(vit: &Vit, image: &ImageContext) -> Outcome {
        outcome(&vit.probabilities(&image.clean.logits), image.target)
    }
}

fn outcome(probs: &[f32], target: usize) -> Outcome {
    Outcome {
        prob: probs[target],
        predicted: argmax(probs),
    }
}

/// Runs `image` once per edit, all edits as one batch; every edit acts at the
/// neuron site of every layer it names (every token of it), and the layers above
/// follow.
pub fn edited_outcomes(vit: &Vit, image: &ImageContext, edits: &[&NeuronEdit]) -> Vec<Outcome> {
    let layers = vit.config.layers;
    let per_layer: Vec<Vec<Vec<(usize, f32)>>> = (0..layers)
        .map(|l| edits.iter().map(|e| e[l].clone()).collect())
        .collect();
    let interventions = vit.at_neuron_sites(per_layer.iter().map(|e| Action::Scale(e)));
    let pixels: Vec<f32> = edits
        .iter()
        .flat_map(|_| image.pixels.iter().copied())
        .collect();
    let logits = vit.logits(&pixels, &interventions);
    vit.probabilities(&logits)
        .chunks_exact(vit.config.classes)
        .map(|p| outcome(p, image.target))
        .collect()
}
