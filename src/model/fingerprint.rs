//! A model's fingerprint: what the records of a run name their model by, so that a
//! resumed run or an experiment can tell another model from the same one.

use super::Vit;
use anyhow::Result;
use std::path::Path;

/// Hash of the weights file's bytes (`model.safetensors` of a Hugging Face folder),
/// the loaded configuration (covering `--heads`), normalisation and class names,
/// and what was given beside the file: a zero-shot classifier's rows, scale and bias
/// (`--classifier`, or `--classes` with their prompts), a `--head` probe. The same
/// for a copy or a move of the checkpoint, different for any other model.
pub fn fingerprint(checkpoint: &Path, vit: &Vit) -> Result<String> {
    let weights = if checkpoint.is_dir() {
        super::checkpoint::weights_file(checkpoint)
    } else {
        checkpoint.to_path_buf()
    };
    let bytes = crate::files::read(&weights, crate::files::WHOLE)?;
    let described = serde_json::to_string(&(
        &vit.config,
        vit.normalization.mean,
        vit.normalization.std,
        &vit.class_names,
    ))?;
    let mut both = [crate::numeric::fingerprint(&bytes), described].concat();
    // Only for the models that have them, so that other fingerprints stay as they were.
    if let Some(z) = &vit.weights.zero_shot {
        let bias = (z.bias != 0.0).then_some(&z.bias);
        both += &floats(z.text.iter().chain([&z.scale]).chain(bias));
    }
    if let Some(head) = &vit.weights.head {
        if vit.config.family.name.ends_with("linear probe") {
            both += &floats(head.w.iter().chain(&head.b));
        }
    }
    Ok(crate::numeric::fingerprint(both.as_bytes()))
}

/// The fingerprint of some numbers' bits.
fn floats<'a>(values: impl Iterator<Item = &'a f32>) -> String {
    let bytes: Vec<u8> = values.flat_map(|v| v.to_le_bytes()).collect();
    crate::numeric::fingerprint(&bytes)
}
