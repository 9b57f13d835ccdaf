//! Images in, model-ready tensors out: decoding, PIL-exact resizing, normalisation.

pub mod decode;
pub mod folder;
pub mod labels;
pub mod resize;
pub mod shard;

use crate::model::{Geometry, Normalization, Vit};
use crate::names::Named;
use anyhow::Result;
use std::path::Path;

pub use decode::RgbImage;
pub use folder::{ImageEntry, ImageSet};
pub use shard::Shard;

/// Which input normalisation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The checkpoint's own mean/std (preprocessor_config.json; ImageNet's when absent).
    Checkpoint,
    /// ImageNet mean/std whatever the checkpoint says: what the paper's code always uses.
    Reference,
}

crate::names::display_by_name!(Preset);

impl Named for Preset {
    const ALL: &'static [Preset] = &[Preset::Checkpoint, Preset::Reference];

    fn name(self) -> &'static str {
        match self {
            Preset::Checkpoint => "checkpoint",
            Preset::Reference => "reference",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Preset::Checkpoint => "the checkpoint's own mean/std and geometry (preprocessor_config.json; ImageNet's mean/std when absent)",
            Preset::Reference => "ImageNet mean/std and a straight resize whatever the checkpoint says: what the paper's code does",
        }
    }
}

pub fn normalization(vit: &Vit, preset: Preset) -> Normalization {
    match preset {
        Preset::Checkpoint => vit.normalization.clone(),
        Preset::Reference => Normalization::imagenet("ImageNet (reference preset)"),
    }
}

/// Resized (and cropped) to `size x size` as `norm.geometry` says, `/255`,
/// `(x - mean) / std`, CHW.
pub fn to_tensor(img: &RgbImage, size: usize, norm: &Normalization) -> Vec<f32> {
    let img = fit(img, size, &norm.geometry);
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - norm.mean[c]) / norm.std[c];
        }
    }
    out
}

/// The image brought to `size x size`: with a crop, resized as the geometry says
/// (Hugging Face's rounding: the long side truncated) and centre-cropped; without
/// one, or when the resized image would be smaller than the crop, resized straight
/// to the size.
fn fit(img: &RgbImage, size: usize, g: &Geometry) -> RgbImage {
    let (w, h) = (img.width, img.height);
    let (rh, rw) = match (g.shortest_edge, g.size) {
        (Some(edge), _) if w <= h => ((edge * h) / w.max(1), edge),
        (Some(edge), _) => (edge, (edge * w) / h.max(1)),
        (None, Some(hw)) => hw,
        (None, None) => (size, size),
    };
    if !g.crop || rh < size || rw < size {
        return resize::resize(img, size, size, g.filter);
    }
    let resized = resize::resize(img, rw, rh, g.filter);
    let (top, left) = ((rh - size) / 2, (rw - size) / 2);
    let mut pixels = Vec::with_capacity(size * size * 3);
    for y in top..top + size {
        pixels.extend_from_slice(&resized.pixels[(y * rw + left) * 3..(y * rw + left + size) * 3]);
    }
    RgbImage {
        width: size,
        height: size,
        pixels,
    }
}

/// Reads an image file and prepares it for `vit`.
pub fn load_image(path: &Path, vit: &Vit, norm: &Normalization) -> Result<Vec<f32>> {
    let img = decode::open(path)?;
    Ok(to_tensor(&img, vit.config.image_size, norm))
}
