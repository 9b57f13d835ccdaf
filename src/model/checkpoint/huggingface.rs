//! Hugging Face `ViTForImageClassification` directories.

use super::{assemble, check_consumed, fuse_qkv, Tensors, IMAGENET_MEAN, IMAGENET_STD};
use crate::model::vit::{Block, Layout, Normalization, Vit, VitConfig};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

pub fn load(dir: &Path) -> Result<Vit> {
    let config_path = dir.join("config.json");
    let weights_path = dir.join("model.safetensors");
    if !config_path.exists() || !weights_path.exists() {
        bail!(
            "{}: a Hugging Face checkpoint directory needs config.json and model.safetensors",
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("{}: cannot read", config_path.display()))?;
    let json: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid JSON", config_path.display()))?;
    let int = |key: &str| -> Result<usize> {
        json.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .with_context(|| format!("{}: missing integer {key}", config_path.display()))
    };
    if let Some(act) = json.get("hidden_act").and_then(Value::as_str) {
        if act != "gelu" {
            bail!(
                "{}: hidden_act {act:?} is not supported (only exact \"gelu\")",
                config_path.display()
            );
        }
    }
    let mut tensors = Tensors::from_safetensors(&weights_path)?;
    let classes = tensors.shape("classifier.weight")?[0];
    let config = VitConfig {
        image_size: int("image_size")?,
        patch_size: int("patch_size")?,
        channels: json
            .get("num_channels")
            .and_then(Value::as_u64)
            .unwrap_or(3) as usize,
        hidden: int("hidden_size")?,
        layers: int("num_hidden_layers")?,
        heads: int("num_attention_heads")?,
        intermediate: int("intermediate_size")?,
        classes,
        layer_norm_eps: json
            .get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-12) as f32,
    };
    let class_names = json.get("id2label").and_then(Value::as_object).map(|m| {
        (0..classes)
            .map(|i| {
                m.get(&i.to_string())
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            })
            .collect()
    });
    let (d, f, eps) = (config.hidden, config.intermediate, config.layer_norm_eps);
    let (c, p) = (config.channels, config.patch_size);
    let patch_embed = tensors
        .take_linear_reshaped("vit.embeddings.patch_embeddings.projection", &[d, c, p, p])?;
    let cls_token = tensors.take("vit.embeddings.cls_token", &[1, 1, d])?;
    let pos_embed = tensors.take(
        "vit.embeddings.position_embeddings",
        &[1, config.tokens(), d],
    )?;
    let mut blocks = Vec::with_capacity(config.layers);
    for i in 0..config.layers {
        let n = |s: &str| format!("vit.encoder.layer.{i}.{s}");
        let mut lin = |s: &str, out, inp| {
            tensors.take_linear(
                &n(&format!("{s}.weight")),
                &n(&format!("{s}.bias")),
                out,
                inp,
            )
        };
        let q = lin("attention.attention.query", d, d)?;
        let k = lin("attention.attention.key", d, d)?;
        let v = lin("attention.attention.value", d, d)?;
        let proj = lin("attention.output.dense", d, d)?;
        let fc1 = lin("intermediate.dense", f, d)?;
        let fc2 = lin("output.dense", d, f)?;
        blocks.push(Block {
            ln1: tensors.take_norm(
                &n("layernorm_before.weight"),
                &n("layernorm_before.bias"),
                d,
                eps,
            )?,
            qkv: fuse_qkv(q, k, v),
            proj,
            ln2: tensors.take_norm(
                &n("layernorm_after.weight"),
                &n("layernorm_after.bias"),
                d,
                eps,
            )?,
            fc1,
            fc2,
        });
    }
    let norm = tensors.take_norm("vit.layernorm.weight", "vit.layernorm.bias", d, eps)?;
    let head = tensors.take_linear("classifier.weight", "classifier.bias", classes, d)?;
    check_consumed(&tensors)?;
    let normalization = read_preprocessor(&dir.join("preprocessor_config.json"))?;
    assemble(Vit {
        config,
        patch_embed,
        cls_token,
        pos_embed,
        blocks,
        norm,
        head,
        layout: Layout::HuggingFace,
        class_names,
        normalization,
    })
}

/// `preprocessor_config.json`'s mean/std, ImageNet's when the file is absent.
fn read_preprocessor(path: &Path) -> Result<Normalization> {
    if !path.exists() {
        return Ok(Normalization::imagenet(
            "ImageNet (no preprocessor_config.json)",
        ));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3]> {
        match json.get(key).and_then(Value::as_array) {
            None => Ok(default),
            Some(a) if a.len() == 3 => {
                Ok([0, 1, 2].map(|i| a[i].as_f64().unwrap_or(f64::NAN) as f32))
            }
            Some(_) => bail!("{}: {key} must have 3 values", path.display()),
        }
    };
    let normalize = json
        .get("do_normalize")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let (mean, std) = if normalize {
        (
            triple("image_mean", IMAGENET_MEAN)?,
            triple("image_std", IMAGENET_STD)?,
        )
    } else {
        ([0.0; 3], [1.0; 3])
    };
    Ok(Normalization {
        mean,
        std,
        source: format!("{}", path.display()),
    })
}
