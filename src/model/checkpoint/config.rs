//! What a checkpoint's JSON files say, read with one set of checks: a value of the
//! wrong kind is an error naming the file, the key and the value (never a default
//! taken silently), and sizes get the limits image headers get. The
//! `preprocessor_config.json` is honoured as Hugging Face's image processors
//! (ViT's, DeiT's, CLIP's, DINOv2's) apply it: resize, centre crop, rescale,
//! normalise.

use crate::data::decode::MAX_PIXELS;
use crate::model::vit::{Filter, Geometry, Normalization, IMAGENET_MEAN, IMAGENET_STD};
use anyhow::{bail, Result};
use serde_json::Value;
use std::path::Path;

/// A JSON object of a checkpoint file, read with errors naming the file and key.
pub(crate) struct Json<'a> {
    pub(crate) path: &'a Path,
    pub(crate) value: &'a Value,
    /// Where this object lies in the file (`size.` for `size`'s keys), for messages.
    prefix: String,
}

impl<'a> Json<'a> {
    pub(crate) fn new(path: &'a Path, value: &'a Value) -> Json<'a> {
        Json {
            path,
            value,
            prefix: String::new(),
        }
    }

    /// The value of `key`; absent and `null` (Hugging Face's "default") are none.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    fn invalid(&self, key: &str, value: &Value, want: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {}{key} is {value}: invalid, {want}",
            self.path.display(),
            self.prefix
        )
    }

    /// A whole number of at least `min`, when present.
    pub(crate) fn uint(&self, key: &str, min: u64) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n >= min && n <= usize::MAX as u64 => Ok(Some(n as usize)),
                _ => Err(self.invalid(
                    key,
                    v,
                    &format!("expected a whole number of at least {min}"),
                )),
            },
        }
    }

    /// A whole number of at least 1 that must be there.
    pub(crate) fn size(&self, key: &str) -> Result<usize> {
        match self.uint(key, 1)? {
            Some(n) => Ok(n),
            None => bail!(
                "{}: missing {}{key} (a whole number)",
                self.path.display(),
                self.prefix
            ),
        }
    }

    /// The value of `key` read by `read`, when present; `want` says what it must be.
    fn typed<T>(
        &self,
        key: &str,
        read: fn(&'a Value) -> Option<T>,
        want: &str,
    ) -> Result<Option<T>> {
        (self.get(key))
            .map(|v| read(v).ok_or_else(|| self.invalid(key, v, want)))
            .transpose()
    }

    /// A number, when present.
    pub(crate) fn number(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, Value::as_f64, "expected a number")
    }

    /// A positive number that stays positive and finite as an `f32`, when present.
    pub(crate) fn positive(&self, key: &str) -> Result<Option<f32>> {
        match self.number(key)? {
            Some(x) if !(x as f32 > 0.0 && (x as f32).is_finite()) => {
                Err(self.invalid(key, &self.value[key], "expected a positive number"))
            }
            x => Ok(x.map(|x| x as f32)),
        }
    }

    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, Value::as_bool, "expected true or false")
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>> {
        self.typed(key, Value::as_str, "expected a name in quotes")
    }

    /// The object under `key`, when present.
    pub(crate) fn object(&self, key: &str) -> Result<Option<Json<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_object() => Ok(Some(Json {
                path: self.path,
                value: v,
                prefix: format!("{}{key}.", self.prefix),
            })),
            Some(v) => Err(self.invalid(key, v, "expected an object {...}")),
        }
    }

    /// The object under `key`, or none with every key absent when it is absent.
    pub(crate) fn object_or_empty(&self, key: &str) -> Result<Json<'a>> {
        static ABSENT: Value = Value::Null;
        Ok(self.object(key)?.unwrap_or(Json {
            path: self.path,
            value: &ABSENT,
            prefix: format!("{}{key}.", self.prefix),
        }))
    }

    /// `key` as messages name it: with the keys of the objects it lies in.
    pub(crate) fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Three numbers (per RGB channel), or one for all three, when present.
    pub(crate) fn triple(&self, key: &str) -> Result<Option<[f32; 3]>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let finite = |x: &Value| x.as_f64().map(|x| x as f32).filter(|x| x.is_finite());
        let values = match v {
            Value::Array(a) if a.len() == 3 => a.iter().map(finite).collect::<Option<Vec<f32>>>(),
            Value::Number(_) => finite(v).map(|x| vec![x; 3]),
            _ => None,
        };
        match values {
            Some(x) => Ok(Some([x[0], x[1], x[2]])),
            None => Err(self.invalid(key, v, "expected 3 numbers, one per channel")),
        }
    }
}

impl Json<'_> {
    /// Per-channel standard deviations, each positive, when present.
    pub(crate) fn std(&self, key: &str) -> Result<Option<[f32; 3]>> {
        let std = self.triple(key)?;
        if let Some((c, s)) = std.and_then(|s| (0..3).map(|c| (c, s[c])).find(|(_, s)| *s <= 0.0)) {
            bail!(
                "{}: {}{key} is {:?}: invalid, channel {c} is {s} (a standard deviation must be positive)",
                self.path.display(),
                self.prefix,
                std.unwrap_or_default()
            );
        }
        Ok(std)
    }

    /// A list of names, when present.
    pub(crate) fn names(&self, key: &str) -> Result<Vec<String>> {
        let v = self.get(key).unwrap_or(&Value::Null);
        let names = v.as_array().and_then(|a| {
            a.iter()
                .map(|s| s.as_str().map(String::from))
                .collect::<Option<Vec<String>>>()
        });
        names.ok_or_else(|| self.invalid(key, v, "expected a list of names"))
    }
}

/// The rescale factor Hugging Face's processors default to.
const RESCALE: f64 = 1.0 / 255.0;

/// `preprocessor_config.json` beside a Hugging Face checkpoint for a model of
/// `image_size`: ImageNet's mean/std and a straight resize when the file is absent.
pub(crate) fn preprocessor(path: &Path, image_size: usize) -> Result<Normalization> {
    if !path.exists() {
        return Ok(Normalization::imagenet(
            "ImageNet (no preprocessor_config.json)",
        ));
    }
    let value = crate::files::read_json(path)?;
    let json = Json::new(path, &value);
    if !value.is_object() {
        bail!("{}: {value}: not a JSON object", path.display());
    }
    let (mut mean, mut std) = match json.boolean("do_normalize")?.unwrap_or(true) {
        true => (
            json.triple("image_mean")?.unwrap_or(IMAGENET_MEAN),
            json.std("image_std")?.unwrap_or(IMAGENET_STD),
        ),
        false => ([0.0; 3], [1.0; 3]),
    };
    let mut source = path.display().to_string();
    // (x * r - mean) / std == (x / 255 - mean') / std' with mean' = mean / (255 r).
    let rescale = match json.boolean("do_rescale")?.unwrap_or(true) {
        true => json.number("rescale_factor")?.unwrap_or(RESCALE),
        false => 1.0,
    };
    if !(rescale.is_finite() && rescale > 0.0) {
        bail!(
            "{}: rescale_factor is {rescale}: invalid, expected a positive number",
            path.display()
        );
    }
    if (rescale / RESCALE - 1.0).abs() > 1e-12 {
        let by = (255.0 * rescale) as f32;
        mean = mean.map(|m| m / by);
        std = std.map(|s| s / by);
        source.push_str(&format!(
            " (pixels rescaled by {rescale}, folded into mean and std)"
        ));
    }
    Ok(Normalization {
        mean,
        std,
        geometry: geometry(&json, image_size)?,
        source,
    })
}

/// Hugging Face's processors that read a bare number `size` as the shortest edge
/// (the others read it as a square).
const SHORTEST_EDGE_PROCESSORS: [&str; 2] = ["CLIP", "Bit"];

/// `(height, width)` of a size object (`height` and `width`) or of a number (a
/// square), under `key`.
fn height_width(json: &Json, key: &str) -> Result<Option<(usize, usize)>> {
    if json.get(key).is_some_and(Value::is_number) {
        return Ok(json.uint(key, 1)?.map(|side| (side, side)));
    }
    let Some(size) = json.object(key)? else {
        return Ok(None);
    };
    let known = ["height", "width", "shortest_edge"];
    if let Some(other) = (size.value.as_object().into_iter().flatten())
        .map(|(k, _)| k)
        .find(|k| !known.contains(&k.as_str()))
    {
        bail!(
            "{}: {key}.{other} is not supported (height and width, or shortest_edge)",
            json.path.display()
        );
    }
    match (size.uint("height", 1)?, size.uint("width", 1)?) {
        (Some(h), Some(w)) => Ok(Some((h, w))),
        (None, None) => Ok(None),
        _ => bail!(
            "{}: {key} has one of height and width: give both",
            json.path.display()
        ),
    }
}

/// Refuses a size beyond the pixels an image header may claim.
fn check_pixels(json: &Json, what: &str, (h, w): (usize, usize)) -> Result<()> {
    if h.saturating_mul(w) > MAX_PIXELS {
        bail!(
            "{}: {what} is {w}x{h}: invalid, over the limit of {} million pixels that images get",
            json.path.display(),
            MAX_PIXELS / 1_000_000
        );
    }
    Ok(())
}

/// The resize and crop of a `preprocessor_config.json`, as Hugging Face applies
/// them: `size` (height/width, or shortest_edge; a bare number is a square, or the
/// shortest edge for CLIP's and DINOv2's processors) unless `do_resize` is false,
/// then `do_center_crop` to `crop_size`, which must be the model's input size.
fn geometry(json: &Json, image_size: usize) -> Result<Geometry> {
    let path = json.path.display();
    let filter = match json.uint("resample", 0)? {
        None | Some(2) => Filter::Bilinear,
        Some(3) => Filter::Bicubic,
        Some(other) => bail!("{path}: resample is {other}: not supported (2 bilinear, 3 bicubic)"),
    };
    let processor = json
        .string("image_processor_type")?
        .or(json.string("feature_extractor_type")?)
        .unwrap_or("");
    let edge_first = SHORTEST_EDGE_PROCESSORS.iter().any(|p| {
        processor
            .strip_prefix(p)
            .is_some_and(|rest| !rest.starts_with(char::is_lowercase))
    });
    let (size, shortest_edge) = match json.get("size") {
        Some(Value::Number(_)) if edge_first => (None, json.uint("size", 1)?),
        _ => {
            let edge = json.object("size").ok().flatten();
            let edge = edge.map(|o| o.uint("shortest_edge", 1)).transpose()?;
            (height_width(json, "size")?, edge.flatten())
        }
    };
    if let Some(hw) = size {
        check_pixels(json, "size", hw)?;
    }
    if let Some(edge) = shortest_edge {
        check_pixels(json, "size.shortest_edge", (edge, edge))?;
    }
    let crop = json.boolean("do_center_crop")?.unwrap_or(false);
    let crop_size = height_width(json, "crop_size")?;
    if let Some(hw) = crop_size {
        check_pixels(json, "crop_size", hw)?;
    }
    let model = (image_size, image_size);
    if crop && crop_size.is_some_and(|c| c != model) {
        let (h, w) = crop_size.unwrap_or(model);
        bail!("{path}: crop_size is {w}x{h}, but the model takes {image_size}x{image_size} images (Hugging Face would give it images it cannot run)");
    }
    let resize = json.boolean("do_resize")?.unwrap_or(true);
    if resize && !crop {
        if let Some((h, w)) = size.filter(|&s| s != model && shortest_edge.is_none()) {
            bail!("{path}: size is {w}x{h} and do_center_crop is false, but the model takes {image_size}x{image_size} images");
        }
    }
    Ok(Geometry {
        size: size.filter(|_| resize && shortest_edge.is_none()),
        shortest_edge: shortest_edge.filter(|_| resize),
        crop,
        keep_size: !resize,
        filter,
    })
}

/// The side of the square `crop_size` a `preprocessor_config.json` centre-crops to,
/// when it does (what a DINOv2 image processor feeds its model).
pub(crate) fn crop_side(path: &Path) -> Result<Option<usize>> {
    if !path.exists() {
        return Ok(None);
    }
    let value = crate::files::read_json(path)?;
    let json = Json::new(path, &value);
    if json.boolean("do_center_crop")? != Some(true) {
        return Ok(None);
    }
    let crop = height_width(&json, "crop_size")?;
    Ok(crop.filter(|(h, w)| h == w).map(|(h, _)| h))
}

/// The preprocessing `n`, made for a model of `from` pixels, for one run at `to`
/// (DINOv2 at another resolution): its sizes scaled by `to / from`, so that a
/// resize to 256 and a crop to 224 become 512 and 448 at 448, as DINOv2's own
/// evaluation keeps the ratio.
pub(crate) fn rescaled(mut n: Normalization, from: usize, to: usize) -> Normalization {
    if from == to {
        return n;
    }
    let scale = |x: usize| ((x * to) as f64 / from as f64).round().max(1.0) as usize;
    let g = &mut n.geometry;
    g.size = g.size.map(|(h, w)| (scale(h), scale(w)));
    g.shortest_edge = g.shortest_edge.map(scale);
    n.source.push_str(&format!(
        ", its sizes scaled by {to}/{from} for --image-size {to}"
    ));
    n
}
