//! One image ready for attribution: its pixels, its clean pass, the class to explain.

use crate::data::{self, ImageEntry};
use crate::model::{CleanTrace, Normalization, Vit};
use crate::names::Named;
use anyhow::{bail, Result};

/// Which class a path explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The ground-truth class from the image's folder (the reference code's choice).
    Label,
    /// The class the model predicts for the clean image.
    Predicted,
}

crate::names::display_by_name!(Target);

impl Named for Target {
    const ALL: &'static [Target] = &[Target::Label, Target::Predicted];

    fn name(self) -> &'static str {
        match self {
            Target::Label => "label",
            Target::Predicted => "predicted",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Target::Label => {
                "the ground-truth class from the image's folder (the reference code's choice)"
            }
            Target::Predicted => "the class the model predicts for the clean image",
        }
    }
}

pub struct ImageContext {
    /// Identifies the image (its path relative to the image folder); seeds `random`.
    pub key: String,
    /// Normalised CHW pixels.
    pub pixels: Vec<f32>,
    pub clean: CleanTrace,
    pub target: usize,
}

impl ImageContext {
    pub fn new(vit: &Vit, key: String, pixels: Vec<f32>, target: usize) -> ImageContext {
        let clean = vit.clean_forward(&pixels);
        ImageContext {
            key,
            pixels,
            clean,
            target,
        }
    }

    /// Reads, decodes and runs one image of a folder; an error says what is wrong with it.
    pub fn load(
        vit: &Vit,
        entry: &ImageEntry,
        norm: &Normalization,
        target: Target,
    ) -> Result<ImageContext> {
        let pixels = data::load_image(&entry.path, vit, norm)?;
        ImageContext::with_target(vit, entry.key.clone(), pixels, entry.label, target)
    }

    /// Runs prepared pixels and picks the class to explain (`label`, the image's
    /// class, for [`Target::Label`]); an error says what is wrong with them.
    pub fn with_target(
        vit: &Vit,
        key: String,
        pixels: Vec<f32>,
        label: Option<usize>,
        target: Target,
    ) -> Result<ImageContext> {
        let mut image = ImageContext::new(vit, key, pixels, 0);
        let logits = &image.clean.logits;
        if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
            bail!("the model's logit {i} is {} for this image", logits[i]);
        }
        image.target = match target {
            Target::Predicted => crate::numeric::argmax(logits),
            Target::Label => match label {
                Some(l) if l < vit.config.classes => l,
                Some(l) => bail!(
                    "label {l} is outside the model's {} classes",
                    vit.config.classes
                ),
                None => {
                    bail!("no label (the image is not in a class folder): use --target predicted")
                }
            },
        };
        Ok(image)
    }

    /// The probabilities of the clean pass, as the model's family defines them.
    pub fn probabilities(&self, vit: &Vit) -> Vec<f32> {
        vit.probabilities(&self.clean.logits)
    }
}
