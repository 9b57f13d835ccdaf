//! timm `VisionTransformer` state dicts (fused `qkv`), from `.safetensors` or a
//! PyTorch `.pth`: the plain ViT (`norm` before a CLS head) and MAE's fine-tuned
//! form (`fc_norm` after the mean of the patch tokens, no `norm`). Dimensions come
//! from shapes; the head count from `--heads`, a `config.json` beside the file
//! (`num_heads`), or the ViT convention of 64-wide heads.

use super::{assemble, block_count, check_consumed, config_from_shapes, Tensors};
use crate::model::family::{Compat, Family};
use crate::model::vit::{Block, Layout, Normalization, Vit};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

pub fn load(mut tensors: Tensors, options: &super::LoadOptions) -> Result<Vit> {
    let file = tensors.file().to_path_buf();
    let layers = block_count(&tensors, |i| format!("blocks.{i}.attn.qkv.weight"));
    let patch_shape = tensors.shape("patch_embed.proj.weight")?.to_vec();
    let [d, channels, p, _] = patch_shape[..] else {
        bail!("{}: patch_embed.proj.weight must be 4-D", file.display())
    };
    let f = tensors.dim("blocks.0.mlp.fc1.weight", 0)?;
    let classes = tensors.dim("head.weight", 0)?;
    let tokens = tensors.dim("pos_embed", 1)?;
    let family = match (
        tensors.contains("norm.weight"),
        tensors.contains("fc_norm.weight"),
    ) {
        (true, false) => Family::VIT,
        (false, true) => Family::MAE,
        (true, true) => bail!(
            "{}: both norm and fc_norm: a head this tool does not model",
            file.display()
        ),
        (false, false) => bail!(
            "{}: missing tensor norm.weight (or fc_norm.weight)",
            file.display()
        ),
    };
    let beside = Beside::read(&file)?;
    let heads = match options.heads.or(beside.heads) {
        Some(h) => h,
        None if d % 64 == 0 => d / 64,
        None => bail!("{}: timm files store no head count and width {d} is not a multiple of 64: pass --heads", file.display()),
    };
    let mut config = config_from_shapes([d, channels, p, p], tokens, layers, heads, f, classes)
        .with_context(|| file.display().to_string())?;
    config.family = family;
    let eps = config.layer_norm_eps;
    let patch_embed = tensors.take_linear_reshaped("patch_embed.proj", &[d, channels, p, p])?;
    let cls_token = tensors.take("cls_token", &[1, 1, d])?;
    let pos_embed = tensors.take("pos_embed", &[1, tokens, d])?;
    let mut blocks = Vec::with_capacity(layers);
    for i in 0..layers {
        let mut b = tensors.pp(&format!("blocks.{i}"));
        blocks.push(Block {
            ln1: b.norm("norm1", d, eps)?,
            qkv: b.linear("attn.qkv", 3 * d, d)?,
            proj: b.linear("attn.proj", d, d)?,
            ln2: b.norm("norm2", d, eps)?,
            fc1: b.linear("mlp.fc1", f, d)?,
            fc2: b.linear("mlp.fc2", d, f)?,
        });
    }
    let norm_name = if family == Family::MAE {
        "fc_norm"
    } else {
        "norm"
    };
    let mut root = tensors.pp("");
    let norm = root.norm(norm_name, d, eps)?;
    let head = root.linear("head", classes, d)?;
    check_consumed(&tensors)?;
    let layout = match file.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Layout::Timm,
        _ => Layout::PyTorch,
    };
    assemble(Vit {
        config,
        patch_embed,
        cls_token,
        pos_embed,
        blocks,
        norm,
        head,
        compat: Compat::Principled,
        layout,
        class_names: beside.classes,
        normalization: beside.normalization,
    })
}

/// What a `config.json` beside a timm file says (timm stores none of it).
struct Beside {
    heads: Option<usize>,
    classes: Option<Vec<String>>,
    normalization: Normalization,
}

impl Beside {
    fn read(file: &Path) -> Result<Beside> {
        let path = file.with_file_name("config.json");
        let none = Beside {
            heads: None,
            classes: None,
            normalization: Normalization::imagenet("ImageNet (timm files carry none)"),
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(none);
        };
        let json: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", path.display()))?;
        let find = |key: &str| {
            json.get(key)
                .or_else(|| json.pointer(&format!("/model_args/{key}")))
                .or_else(|| json.pointer(&format!("/pretrained_cfg/{key}")))
        };
        let heads = find("num_heads")
            .and_then(Value::as_u64)
            .map(|h| h as usize);
        let classes = find("classes")
            .or_else(|| find("label_names"))
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .map(|s| s.as_str().map(String::from))
                    .collect()
            });
        let triple = |keys: [&str; 2]| -> Option<[f32; 3]> {
            let a = keys.iter().find_map(|k| find(k)?.as_array())?;
            (a.len() == 3).then(|| [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(f64::NAN) as f32))
        };
        let normalization = match (triple(["image_mean", "mean"]), triple(["image_std", "std"])) {
            (Some(mean), Some(std)) if mean.iter().chain(&std).all(|v| v.is_finite()) => {
                Normalization {
                    mean,
                    std,
                    source: path.display().to_string(),
                }
            }
            _ => none.normalization,
        };
        Ok(Beside {
            heads,
            classes,
            normalization,
        })
    }
}
