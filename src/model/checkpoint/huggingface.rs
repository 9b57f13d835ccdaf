//! Hugging Face `ViTForImageClassification` directories.

use super::{assemble, check_consumed, fuse_qkv, Tensors, IMAGENET_MEAN, IMAGENET_STD};
use crate::model::family::{Compat, Family};
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
    if let Some(kind) = json.get("model_type").and_then(Value::as_str) {
        if kind != "vit" {
            let arch = json
                .pointer("/architectures/0")
                .and_then(Value::as_str)
                .unwrap_or("?");
            bail!(
                "{}: model_type {kind:?} ({arch}) is not supported yet (only \"vit\", ViTForImageClassification)",
                config_path.display()
            );
        }
    }
    if let Some(act) = json.get("hidden_act").and_then(Value::as_str) {
        if act != "gelu" {
            bail!(
                "{}: hidden_act {act:?} is not supported (only exact \"gelu\")",
                config_path.display()
            );
        }
    }
    let mut tensors = Tensors::from_safetensors(&weights_path)?;
    let classes = tensors.dim("classifier.weight", 0)?;
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
        family: Family::VIT,
    };
    super::check_config(&config).with_context(|| config_path.display().to_string())?;
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
        let mut b = tensors.pp(&format!("vit.encoder.layer.{i}"));
        let q = b.linear("attention.attention.query", d, d)?;
        let k = b.linear("attention.attention.key", d, d)?;
        let v = b.linear("attention.attention.value", d, d)?;
        blocks.push(Block {
            ln1: b.norm("layernorm_before", d, eps)?,
            qkv: fuse_qkv(q, k, v),
            proj: b.linear("attention.output.dense", d, d)?,
            ln2: b.norm("layernorm_after", d, eps)?,
            fc1: b.linear("intermediate.dense", f, d)?,
            fc2: b.linear("output.dense", d, f)?,
        });
    }
    let norm = tensors.pp("vit").norm("layernorm", d, eps)?;
    let head = tensors.pp("").linear("classifier", classes, d)?;
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
        compat: Compat::Principled,
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
