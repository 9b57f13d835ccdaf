//! Hugging Face directories (`config.json` + `model.safetensors`, as
//! `save_pretrained` writes them; transformers 5 renames some modules on load but
//! writes the older names, which are the ones read here). One table per
//! `model_type` maps names to parts: ViT, DeiT (distilled or not), the CLIP vision
//! tower with its projection, DINOv2 (with or without registers, GELU or SwiGLU).

use super::{
    assemble, average_heads, check_consumed, fold_scale, fuse_qkv, Scope, Tensors, IMAGENET_MEAN,
    IMAGENET_STD,
};
use crate::model::family::{Compat, Family, FfnActivation, Readout};
use crate::model::vit::{
    Block, Filter, Geometry, Layout, Linear, Normalization, Vit, VitConfig, Weights, ZeroShot,
};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// How one model type names a block's parts, under `{root}.{layers}.{i}`.
struct Names {
    root: &'static str,
    layers: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    out: &'static str,
    ln1: &'static str,
    ln2: &'static str,
    fc1: &'static str,
    fc2: &'static str,
    /// The two layer scales (DINOv2).
    scales: Option<(&'static str, &'static str)>,
    /// The readout's norm, under `root`.
    norm: &'static str,
}

const VIT_BLOCK: Names = Names {
    root: "vit",
    layers: "encoder.layer",
    q: "attention.attention.query",
    k: "attention.attention.key",
    v: "attention.attention.value",
    out: "attention.output.dense",
    ln1: "layernorm_before",
    ln2: "layernorm_after",
    fc1: "intermediate.dense",
    fc2: "output.dense",
    scales: None,
    norm: "layernorm",
};

/// The names and family of a model type, given its config.
fn names_for(kind: &str, json: &Value, swiglu: bool) -> Option<(Names, Family)> {
    let registers = json
        .get("num_register_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    Some(match kind {
        "vit" => (VIT_BLOCK, Family::VIT),
        "deit" => (
            Names {
                root: "deit",
                ..VIT_BLOCK
            },
            Family {
                name: "DeiT",
                ..Family::VIT
            },
        ),
        "clip_vision_model" => (
            Names {
                root: "vision_model",
                layers: "encoder.layers",
                q: "self_attn.q_proj",
                k: "self_attn.k_proj",
                v: "self_attn.v_proj",
                out: "self_attn.out_proj",
                ln1: "layer_norm1",
                ln2: "layer_norm2",
                fc1: "mlp.fc1",
                fc2: "mlp.fc2",
                scales: None,
                norm: "post_layernorm",
            },
            Family {
                name: "CLIP vision tower",
                norm_pre: true,
                zero_shot: true,
                ..Family::VIT
            },
        ),
        "dinov2" | "dinov2_with_registers" => (
            Names {
                root: if kind == "dinov2" {
                    "dinov2"
                } else {
                    "dinov2_with_registers"
                },
                ln1: "norm1",
                ln2: "norm2",
                fc1: if swiglu { "mlp.weights_in" } else { "mlp.fc1" },
                fc2: if swiglu { "mlp.weights_out" } else { "mlp.fc2" },
                scales: Some(("layer_scale1.lambda1", "layer_scale2.lambda1")),
                ..VIT_BLOCK
            },
            Family {
                name: if registers > 0 {
                    "DINOv2 with registers"
                } else {
                    "DINOv2"
                },
                registers,
                readout: Readout::ClsAndMeanPatches,
                layer_scale: true,
                activation: if swiglu {
                    FfnActivation::SwiGlu
                } else {
                    FfnActivation::GeluErf
                },
                ..Family::VIT
            },
        ),
        _ => return None,
    })
}

/// What a model's config.json says, read with errors naming the file.
struct Config<'a> {
    path: &'a Path,
    json: Value,
}

impl Config<'_> {
    fn int(&self, key: &str) -> Result<usize> {
        self.json
            .get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .with_context(|| format!("{}: missing integer {key}", self.path.display()))
    }

    fn activation(&self, family: Family) -> Result<FfnActivation> {
        if family.activation == FfnActivation::SwiGlu {
            return Ok(FfnActivation::SwiGlu);
        }
        Ok(match self.json.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu") {
            "gelu" => FfnActivation::GeluErf,
            "quick_gelu" => FfnActivation::QuickGelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => FfnActivation::GeluTanh,
            other => bail!("{}: hidden_act {other:?} is not supported (gelu, quick_gelu, gelu_pytorch_tanh)", self.path.display()),
        })
    }
}

pub fn load(dir: &Path, options: &super::LoadOptions) -> Result<Vit> {
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
    let cfg = Config {
        path: &config_path,
        json,
    };
    let kind = cfg
        .json
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("vit");
    let swiglu = cfg
        .json
        .get("use_swiglu_ffn")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some((names, mut family)) = names_for(kind, &cfg.json, swiglu) else {
        let arch = cfg
            .json
            .pointer("/architectures/0")
            .and_then(Value::as_str)
            .unwrap_or("?");
        bail!(
            "{}: model_type {kind:?} ({arch}) is not supported (vit, deit, clip_vision_model, dinov2, dinov2_with_registers)",
            config_path.display()
        );
    };
    family.activation = cfg.activation(family)?;
    let mut tensors = Tensors::from_safetensors(&weights_path)?;
    let root = names.root;
    family.distillation = tensors.contains(&format!("{root}.embeddings.distillation_token"));
    if family.distillation {
        family.name = "DeiT (distilled)";
        family.readout = Readout::ClsAndDistillation;
    }
    let fc1 = format!("{root}.{}.0.{}.weight", names.layers, names.fc1);
    let f = tensors.dim(&fc1, 0)? / family.activation.fc1_width(1);
    let config = VitConfig {
        image_size: cfg.int("image_size")?,
        patch_size: cfg.int("patch_size")?,
        channels: cfg.int("num_channels").unwrap_or(3),
        hidden: cfg.int("hidden_size")?,
        layers: cfg.int("num_hidden_layers")?,
        heads: cfg.int("num_attention_heads")?,
        intermediate: f,
        classes: 0,
        layer_norm_eps: cfg
            .json
            .get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-12) as f32,
        family,
    };
    // The classes come with the head, read below.
    let sizes = VitConfig {
        classes: 1,
        ..config.clone()
    };
    super::check_config(&sizes).with_context(|| config_path.display().to_string())?;
    let (patch_embed, prefix, pos_embed) = embeddings(&mut tensors, &config, kind, root)?;
    let d = config.hidden;
    let eps = config.layer_norm_eps;
    let norm_pre = match family.norm_pre {
        true => Some(tensors.pp(root).norm("pre_layrnorm", d, eps)?),
        false => None,
    };
    let blocks = (0..config.layers)
        .map(|i| {
            block(
                &mut tensors.pp(&format!("{root}.{}.{i}", names.layers)),
                &names,
                &config,
            )
        })
        .collect::<Result<Vec<Block>>>()?;
    let norm = tensors.pp(root).norm(names.norm, d, eps)?;
    let (head, zero_shot, names_of_classes) = head(&mut tensors, &cfg.json, &config, options)?;
    let mut config = config;
    config.classes = zero_shot
        .as_ref()
        .map_or(head.b.len(), |z| z.text.len() / head.b.len());
    check_consumed(&tensors)?;
    let normalization = read_preprocessor(&dir.join("preprocessor_config.json"))?;
    assemble(Vit {
        config,
        weights: Weights {
            patch_embed,
            prefix,
            pos_embed,
            norm_pre,
            blocks,
            norm,
            head,
            zero_shot,
        },
        gpu: None,
        compat: Compat::Principled,
        neuron_tokens: family.neuron_tokens(),
        unit: crate::model::site::Activation::MlpPost,
        layout: Layout::HuggingFace,
        class_names: names_of_classes,
        normalization,
    })
}

/// The head, the zero-shot classifier of a CLIP tower, and the class names.
#[allow(clippy::type_complexity)]
fn head(
    t: &mut Tensors,
    json: &Value,
    c: &VitConfig,
    options: &super::LoadOptions,
) -> Result<(Linear, Option<ZeroShot>, Option<Vec<String>>)> {
    let (d, family) = (c.hidden, c.family);
    if family.zero_shot {
        let embedding = t.dim("visual_projection.weight", 0)?;
        let head = Linear {
            w: t.take("visual_projection.weight", &[embedding, d])?,
            b: vec![0.0; embedding],
        };
        let (zero_shot, names) = super::zero_shot::read(options, embedding, t.file())?;
        return Ok((head, Some(zero_shot), names));
    }
    super::zero_shot::refuse_classifier(options, t.file())?;
    let head = if family.distillation {
        let classes = t.dim("cls_classifier.weight", 0)?;
        let mut root = t.pp("");
        let cls = root.linear("cls_classifier", classes, d)?;
        let dist = root.linear("distillation_classifier", classes, d)?;
        average_heads(&cls, &dist, d)
    } else {
        let classes = t.dim("classifier.weight", 0)?;
        let width = family.readout.width(d);
        t.pp("").linear("classifier", classes, width)?
    };
    let classes = head.b.len();
    let names = json.get("id2label").and_then(Value::as_object).map(|m| {
        (0..classes)
            .map(|i| {
                m.get(&i.to_string())
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            })
            .collect()
    });
    Ok((head, None, names))
}

/// One block, layer scales folded into the attention output and fc2.
fn block(b: &mut Scope, names: &Names, c: &VitConfig) -> Result<Block> {
    let (d, f, eps) = (c.hidden, c.intermediate, c.layer_norm_eps);
    let q = b.linear(names.q, d, d)?;
    let k = b.linear(names.k, d, d)?;
    let v = b.linear(names.v, d, d)?;
    let mut proj = b.linear(names.out, d, d)?;
    let mut fc2 = b.linear(names.fc2, d, f)?;
    if let Some((ls1, ls2)) = names.scales {
        fold_scale(&mut proj, &b.take(ls1, &[d])?);
        fold_scale(&mut fc2, &b.take(ls2, &[d])?);
    }
    Ok(Block {
        ln1: b.norm(names.ln1, d, eps)?,
        qkv: fuse_qkv(q, k, v),
        proj,
        ln2: b.norm(names.ln2, d, eps)?,
        fc1: b.linear(names.fc1, c.family.activation.fc1_width(f), d)?,
        fc2,
    })
}

/// The patch embedding, the prefix tokens `[prefix, d]` and the position
/// embedding `[tokens, d]` of each model type.
fn embeddings(
    t: &mut Tensors,
    c: &VitConfig,
    kind: &str,
    root: &str,
) -> Result<(Linear, Vec<f32>, Vec<f32>)> {
    let (d, ch, p, tokens) = (c.hidden, c.channels, c.patch_size, c.tokens());
    let patch_shape = [d, ch, p, p];
    if kind == "clip_vision_model" {
        let mut e = t.pp("vision_model.embeddings");
        let patch = Linear {
            w: e.take("patch_embedding.weight", &patch_shape)?,
            b: vec![0.0; d],
        };
        let cls = e.take("class_embedding", &[d])?;
        let pos = e.take("position_embedding.weight", &[tokens, d])?;
        return Ok((patch, cls, pos));
    }
    let mut e = t.pp(&format!("{root}.embeddings"));
    let patch = Linear {
        w: e.take("patch_embeddings.projection.weight", &patch_shape)?,
        b: e.take("patch_embeddings.projection.bias", &[d])?,
    };
    let mut prefix = e.take("cls_token", &[1, 1, d])?;
    let fam = &c.family;
    if fam.distillation {
        prefix.extend(e.take("distillation_token", &[1, 1, d])?);
    }
    if !kind.starts_with("dinov2") {
        return Ok((
            patch,
            prefix,
            e.take("position_embeddings", &[1, tokens, d])?,
        ));
    }
    // DINOv2: positions for CLS and the patches only; registers get none. Its
    // mask token is for masked pre-training and unused at inference.
    e.take("mask_token", &[1, d])?;
    if fam.registers > 0 {
        prefix.extend(e.take("register_tokens", &[1, fam.registers, d])?);
    }
    let pos = e.take("position_embeddings", &[1, tokens - fam.registers, d])?;
    let mut full = pos[..d].to_vec();
    full.extend(std::iter::repeat_n(0.0, fam.registers * d));
    full.extend_from_slice(&pos[d..]);
    Ok((patch, prefix, full))
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
        geometry: geometry(&json, path)?,
        source: format!("{}", path.display()),
    })
}

/// The resize and crop of a `preprocessor_config.json` (`size` as height/width or
/// shortest_edge, `do_center_crop` + `crop_size`, `resample`).
fn geometry(json: &Value, path: &Path) -> Result<Geometry> {
    let size = json.get("size");
    let dim = |v: Option<&Value>, key: &str| {
        v.and_then(|v| v.get(key))
            .and_then(Value::as_u64)
            .map(|v| v as usize)
    };
    let filter = match json.get("resample").and_then(Value::as_u64) {
        None | Some(2) => Filter::Bilinear,
        Some(3) => Filter::Bicubic,
        Some(other) => bail!(
            "{}: resample {other} is not supported (2 bilinear, 3 bicubic)",
            path.display()
        ),
    };
    let resize = json
        .get("do_resize")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(Geometry {
        size: resize
            .then(|| dim(size, "height").zip(dim(size, "width")))
            .flatten(),
        shortest_edge: resize.then(|| dim(size, "shortest_edge")).flatten(),
        crop: json
            .get("do_center_crop")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        filter,
    })
}
