//! Images in, model-ready tensors out: decoding, PIL-exact resizing, normalisation.

pub mod decode;
pub mod folder;
pub mod labels;
pub mod resize;

use crate::model::{Normalization, Vit};
use anyhow::Result;
use std::path::Path;

pub use decode::RgbImage;
pub use folder::{ImageEntry, ImageSet};

/// Which input normalisation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The checkpoint's own mean/std (preprocessor_config.json; ImageNet's when absent).
    Checkpoint,
    /// ImageNet mean/std whatever the checkpoint says: what the paper's code always uses.
    Reference,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Checkpoint => "checkpoint",
            Preset::Reference => "reference",
        }
    }

    /// The preset named `name` (as [`Preset::name`] writes it).
    pub fn from_name(name: &str) -> Option<Preset> {
        [Preset::Checkpoint, Preset::Reference]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

pub fn normalization(vit: &Vit, preset: Preset) -> Normalization {
    match preset {
        Preset::Checkpoint => vit.normalization.clone(),
        Preset::Reference => Normalization::imagenet("ImageNet (reference preset)"),
    }
}

/// Bilinear resize to `size x size` (no crop), `/255`, `(x - mean) / std`, CHW.
pub fn to_tensor(img: &RgbImage, size: usize, norm: &Normalization) -> Vec<f32> {
    let img = resize::resize_bilinear(img, size, size);
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - norm.mean[c]) / norm.std[c];
        }
    }
    out
}

/// Reads an image file and prepares it for `vit`.
pub fn load_image(path: &Path, vit: &Vit, norm: &Normalization) -> Result<Vec<f32>> {
    let img = decode::open(path)?;
    Ok(to_tensor(&img, vit.config.image_size, norm))
}
