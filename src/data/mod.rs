//! Images in, model-ready tensors out: decoding, PIL-exact resizing, normalisation.

pub mod decode;
pub mod folder;
pub mod labels;
pub mod resize;
pub mod shard;

use crate::model::{Geometry, Normalization, Vit};
use crate::names::Named;
use anyhow::{bail, Context, Result};
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
/// `(x - mean) / std`, CHW; an error when the geometry cannot make that size of
/// this image (see [`fit`]).
pub fn to_tensor(img: &RgbImage, size: usize, norm: &Normalization) -> Result<Vec<f32>> {
    let img = fit(img, size, &norm.geometry)?;
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - norm.mean[c]) / norm.std[c];
        }
    }
    Ok(out)
}

/// The image brought to `size x size` as Hugging Face's processors bring it:
/// resized as the geometry says (the shortest edge with the long side truncated,
/// or to a height and width; none with `keep_size`), then centre-cropped (padded
/// with black where smaller). Without a crop the resized image must be the size.
/// A resize beyond [`decode::MAX_PIXELS`] is refused before anything that size is
/// allocated.
fn fit(img: &RgbImage, size: usize, g: &Geometry) -> Result<RgbImage> {
    let (w, h) = (img.width, img.height);
    let (rh, rw) = match (g.shortest_edge, g.size) {
        _ if g.keep_size => (h, w),
        (Some(edge), _) if w <= h => (edge.saturating_mul(h) / w.max(1), edge),
        (Some(edge), _) => (edge, edge.saturating_mul(w) / h.max(1)),
        (None, Some(hw)) => hw,
        (None, None) => (size, size),
    };
    if rw.saturating_mul(rh) > decode::MAX_PIXELS {
        bail!(
            "resizing its {w}x{h} pixels to a shortest edge of {} makes {rw}x{rh}, over the limit of {} million pixels",
            g.shortest_edge.unwrap_or(size),
            decode::MAX_PIXELS / 1_000_000
        );
    }
    let resized = resize::resize(img, rw, rh, g.filter);
    if g.crop {
        return Ok(centre_crop(&resized, size));
    }
    if (rw, rh) != (size, size) {
        bail!(
            "its {w}x{h} pixels make {rw}x{rh} ({}), not the model's {size}x{size}, and the preprocessing has no centre crop",
            if g.keep_size { "do_resize is false" } else { "resized by the shortest edge" }
        );
    }
    Ok(resized)
}

/// The centre `size x size` of `img` as Hugging Face's `center_crop` takes it: the
/// top-left corner at `floor((side - size) / 2)` on each axis (negative: the image
/// is smaller and padded with black, the larger half of the padding after it).
fn centre_crop(img: &RgbImage, size: usize) -> RgbImage {
    let offset = |side: usize| (side as i64 - size as i64).div_euclid(2);
    let (top, left) = (offset(img.height), offset(img.width));
    let mut pixels = vec![0u8; size * size * 3];
    for y in 0..size {
        let Ok(sy) = usize::try_from(y as i64 + top) else {
            continue;
        };
        if sy >= img.height {
            continue;
        }
        for x in 0..size {
            let Ok(sx) = usize::try_from(x as i64 + left) else {
                continue;
            };
            if sx < img.width {
                let from = (sy * img.width + sx) * 3;
                pixels[(y * size + x) * 3..][..3].copy_from_slice(&img.pixels[from..from + 3]);
            }
        }
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
    to_tensor(&img, vit.config.image_size, norm).with_context(|| path.display().to_string())
}
