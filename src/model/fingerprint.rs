//! A model's fingerprint: what the records of a run name their model by, so that a
//! resumed run or an experiment can tell another model from the same one.

use super::Vit;
use anyhow::Result;
use std::path::Path;

/// Hash of the weights file's bytes (`model.safetensors` of a Hugging Face folder),
/// the loaded configuration (covering `--heads`), normalisation and class names:
/// the same for a copy or a move of the checkpoint, different for any other model.
pub fn fingerprint(checkpoint: &Path, vit: &Vit) -> Result<String> {
    let weights = if checkpoint.is_dir() {
        checkpoint.join("model.safetensors")
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
    let both = [crate::numeric::fingerprint(&bytes), described].concat();
    Ok(crate::numeric::fingerprint(both.as_bytes()))
}
