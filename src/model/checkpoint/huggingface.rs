//! Hugging Face directories (`config.json` + `model.safetensors`, as
//! `save_pretrained` writes them; transformers 5 renames some modules on load but
//! writes the older names, which are the ones read here). One table per
//! `model_type` maps names to parts: ViT, DeiT (distilled or not), the CLIP vision
//! tower with its projection, DINOv2 (with or without registers, GELU or SwiGLU).

use super::config::Json;
use super::{assemble, average_heads, check_consumed, fold_scale, fuse_qkv, Scope, Tensors};
use crate::model::family::{Compat, Family, FfnActivation, Readout};
use crate::model::vit::{Block, Layout, Linear, Vit, VitConfig, Weights, ZeroShot};
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

/// `hidden_act` of a config: Hugging Face's names of the activations modelled.
fn activation(cfg: &Json, family: Family) -> Result<FfnActivation> {
    if family.activation == FfnActivation::SwiGlu {
        return Ok(FfnActivation::SwiGlu);
    }
    Ok(match cfg.string("hidden_act")?.unwrap_or("gelu") {
        "gelu" => FfnActivation::GeluErf,
        "quick_gelu" => FfnActivation::QuickGelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => FfnActivation::GeluTanh,
        other => bail!(
            "{}: hidden_act is {other:?}: not supported (gelu, quick_gelu, gelu_pytorch_tanh)",
            cfg.path.display()
        ),
    })
}

/// The checkpoint files a folder holds that are not a Hugging Face pair, for a hint.
fn other_checkpoints(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| {
                ["pth", "pt", "safetensors", "npz"].contains(&&*e.to_string_lossy())
            })
        })
        .map(|p| p.display().to_string())
        .collect();
    found.sort();
    found
}

pub fn load(dir: &Path, options: &super::LoadOptions) -> Result<Vit> {
    let config_path = dir.join("config.json");
    let weights_path = dir.join("model.safetensors");
    if !config_path.exists() || !weights_path.exists() {
        let hint = match &other_checkpoints(dir)[..] {
            [] => String::new(),
            [one] => format!("; it holds {one}: pass that file as --model"),
            more => format!(
                "; it holds {}: pass one of them as --model",
                more.join(", ")
            ),
        };
        bail!(
            "{}: a Hugging Face checkpoint directory needs config.json and model.safetensors{hint}",
            dir.display()
        );
    }
    let json = crate::files::read_json(&config_path)?;
    if !json.is_object() {
        bail!("{}: {json}: not a JSON object", config_path.display());
    }
    let cfg = Json::new(&config_path, &json);
    let kind = cfg.string("model_type")?.unwrap_or("vit");
    let swiglu = cfg.boolean("use_swiglu_ffn")?.unwrap_or(false);
    cfg.uint("num_register_tokens", 0)?;
    let Some((names, mut family)) = names_for(kind, &json, swiglu) else {
        let arch = json
            .pointer("/architectures/0")
            .and_then(Value::as_str)
            .unwrap_or("?");
        bail!(
            "{}: model_type {kind:?} ({arch}) is not supported (vit, deit, clip_vision_model, dinov2, dinov2_with_registers)",
            config_path.display()
        );
    };
    if let Some(heads) = options.heads {
        bail!(
            "--heads {heads}: a Hugging Face checkpoint's config.json gives its head count ({}); --heads is for timm and .pth files",
            cfg.uint("num_attention_heads", 0)?.map_or("none".into(), |h| h.to_string())
        );
    }
    family.activation = activation(&cfg, family)?;
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
        image_size: cfg.size("image_size")?,
        patch_size: cfg.size("patch_size")?,
        channels: cfg.uint("num_channels", 1)?.unwrap_or(3),
        hidden: cfg.size("hidden_size")?,
        layers: cfg.size("num_hidden_layers")?,
        heads: cfg.size("num_attention_heads")?,
        intermediate: f,
        classes: 0,
        layer_norm_eps: cfg.positive("layer_norm_eps")?.unwrap_or(1e-12),
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
    let (head, zero_shot, names_of_classes) = head(&mut tensors, &cfg, &config, options)?;
    let mut config = config;
    config.classes = zero_shot
        .as_ref()
        .map_or(head.b.len(), |z| z.text.len() / head.b.len());
    check_consumed(&tensors)?;
    let preprocessor = dir.join("preprocessor_config.json");
    let normalization = super::config::preprocessor(&preprocessor, config.image_size)?;
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
    json: &Json,
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
    let names = class_names(json, classes)?;
    Ok((head, None, names))
}

/// The names of `id2label` for `classes` classes (`"?"` for one it leaves out).
fn class_names(json: &Json, classes: usize) -> Result<Option<Vec<String>>> {
    let Some(map) = json.object("id2label")? else {
        return Ok(None);
    };
    let names = (0..classes)
        .map(|i| Ok(map.string(&i.to_string())?.unwrap_or("?").to_string()))
        .collect::<Result<_>>()?;
    Ok(Some(names))
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
