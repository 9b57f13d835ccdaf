//! Image thumbnails as PNG `data:` URIs: the page carries its pictures inside it,
//! small enough that a thousand of them stay a few megabytes.

use crate::data::{decode, resize};
use anyhow::{Context, Result};
use base64::Engine;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// Longest side of a thumbnail in pixels; smaller images (CIFAR's 32) are kept as
/// they are and scaled up by the browser.
pub const THUMBNAIL_PX: usize = 64;

/// Thumbnails of a set of images, by key.
pub struct Thumbnails {
    pub uris: HashMap<String, String>,
    /// Why an image could not be shown: one message per unreadable file.
    pub missing: Vec<String>,
}

/// Thumbnails of the images `keys` (relative to `root`), decoded on all cores.
pub fn load<'a>(keys: impl Iterator<Item = &'a str>, root: &Path) -> Thumbnails {
    let keys: Vec<&str> = keys.collect();
    let results: Vec<(&str, Result<String>)> = keys
        .par_iter()
        .map(|&key| (key, thumbnail_uri(&crate::data::folder::path_of(root, key))))
        .collect();
    let mut thumbnails = Thumbnails {
        uris: HashMap::new(),
        missing: vec![],
    };
    for (key, uri) in results {
        match uri {
            Ok(uri) => {
                thumbnails.uris.insert(key.to_string(), uri);
            }
            Err(e) => thumbnails.missing.push(format!("{e:#}")),
        }
    }
    thumbnails
}

/// Reads the image at `path`, shrinks it to at most `THUMBNAIL_PX` and encodes it.
pub fn thumbnail_uri(path: &Path) -> Result<String> {
    let image = decode::open(path)?;
    let longest = image.width.max(image.height);
    let image = if longest > THUMBNAIL_PX {
        let scaled = |side: usize| (side * THUMBNAIL_PX).div_ceil(longest).max(1);
        resize::resize_bilinear(&image, scaled(image.width), scaled(image.height))
    } else {
        image
    };
    let (w, h) = (image.width, image.height);
    png_uri(w, h, png::ColorType::Rgb, &image.pixels)
        .with_context(|| format!("{}: cannot encode a thumbnail", path.display()))
}

/// A PNG `data:` URI of `width x height` pixels of `color`, 8 bits per channel.
pub fn png_uri(
    width: usize,
    height: usize,
    color: png::ColorType,
    pixels: &[u8],
) -> Result<String> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    ))
}
