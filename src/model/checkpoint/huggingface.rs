//! Hugging Face directories (`config.json` + `model.safetensors` or
//! `pytorch_model.bin`, as `save_pretrained` writes them; transformers 5 renames
//! some modules on load but writes the older names, which are the ones read here).
//! One table per `model_type` maps names to parts: ViT, DeiT (distilled or not), CLIP
//! (the vision tower with its projection, or `CLIPModel` with its text tower, which
//! computes the zero-shot class rows), DINOv2 (with or without registers, GELU or
//! SwiGLU, at any image size), and any of them saved as a backbone without its head
//! (with a `--head` probe).

use super::interpolate::{self, Bicubic};
use super::text::{TextConfig, TextNames, TextTower};
use super::zero_shot::Text;
use super::{
    assemble, average_heads, check_consumed, join, BlockNames, Qkv, Tensors, IMAGENET_MEAN,
    IMAGENET_STD,
};
use crate::model::family::{Compat, Family, FfnActivation, Readout};
use crate::model::vit::{
    Block, Filter, Geometry, Layout, Linear, Normalization, Vit, VitConfig, ZeroShot,
};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// How one model type names its parts: blocks under `{root}.{layers}.{i}`, the
/// readout's norm under `root` (the root is absent when a backbone is saved alone).
struct Names {
    root: &'static str,
    layers: &'static str,
    block: BlockNames,
    norm: &'static str,
}

const VIT_BLOCK: BlockNames = BlockNames {
    qkv: Qkv::Split {
        q: "attention.attention.query",
        k: "attention.attention.key",
        v: "attention.attention.value",
    },
    out: "attention.output.dense",
    ln1: "layernorm_before",
    ln2: "layernorm_after",
    fc1: "intermediate.dense",
    fc2: "output.dense",
    scales: None,
};

const VIT: Names = Names {
    root: "vit",
    layers: "encoder.layer",
    block: VIT_BLOCK,
    norm: "layernorm",
};

/// CLIP's blocks, in both towers.
const CLIP_BLOCK: BlockNames = BlockNames {
    qkv: Qkv::Split {
        q: "self_attn.q_proj",
        k: "self_attn.k_proj",
        v: "self_attn.v_proj",
    },
    out: "self_attn.out_proj",
    ln1: "layer_norm1",
    ln2: "layer_norm2",
    fc1: "mlp.fc1",
    fc2: "mlp.fc2",
    scales: None,
};

/// `CLIPModel`'s text tower, under `text_model`.
const CLIP_TEXT: TextNames = TextNames {
    token_embedding: "embeddings.token_embedding.weight",
    positions: "embeddings.position_embedding.weight",
    layers: "encoder.layers",
    block: CLIP_BLOCK,
    final_norm: "final_layer_norm",
};

/// The names and family of a model type, given its config.
fn names_for(kind: &str, json: &Value, swiglu: bool) -> Option<(Names, Family)> {
    let registers = json
        .get("num_register_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    Some(match kind {
        "vit" => (VIT, Family::VIT),
        "deit" => (
            Names {
                root: "deit",
                ..VIT
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
                block: CLIP_BLOCK,
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
                block: BlockNames {
                    ln1: "norm1",
                    ln2: "norm2",
                    fc1: if swiglu { "mlp.weights_in" } else { "mlp.fc1" },
                    fc2: if swiglu { "mlp.weights_out" } else { "mlp.fc2" },
                    scales: Some(("layer_scale1.lambda1", "layer_scale2.lambda1")),
                    ..VIT_BLOCK
                },
                ..VIT
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
    /// The model type's defaults, for configs saved without them.
    defaults: Defaults,
}

/// What transformers assumes for a model type when its config leaves a field out.
#[derive(Clone, Copy)]
struct Defaults {
    activation: &'static str,
    eps: f64,
}

impl Defaults {
    fn of(kind: &str) -> Defaults {
        match kind {
            "clip_vision_model" | "clip_text_model" => Defaults {
                activation: "quick_gelu",
                eps: 1e-5,
            },
            "dinov2" | "dinov2_with_registers" => Defaults {
                activation: "gelu",
                eps: 1e-6,
            },
            _ => Defaults {
                activation: "gelu",
                eps: 1e-12,
            },
        }
    }
}

impl Config<'_> {
    fn int(&self, key: &str) -> Result<usize> {
        self.json
            .get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .with_context(|| format!("{}: missing integer {key}", self.path.display()))
    }

    fn eps(&self) -> f32 {
        self.json
            .get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(self.defaults.eps) as f32
    }

    fn activation(&self, family: Family) -> Result<FfnActivation> {
        if family.activation == FfnActivation::SwiGlu {
            return Ok(FfnActivation::SwiGlu);
        }
        let act = self.json.get("hidden_act").and_then(Value::as_str);
        Ok(match act.unwrap_or(self.defaults.activation) {
            "gelu" => FfnActivation::GeluErf,
            "quick_gelu" => FfnActivation::QuickGelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => FfnActivation::GeluTanh,
            other => bail!(
                "{}: hidden_act {other:?} is not supported (gelu, quick_gelu, gelu_pytorch_tanh)",
                self.path.display()
            ),
        })
    }
}

/// The weights of a Hugging Face folder: `model.safetensors`, else `pytorch_model.bin`.
pub(super) fn weights_file(dir: &Path) -> PathBuf {
    let bin = dir.join("pytorch_model.bin");
    match dir.join("model.safetensors") {
        st if !st.exists() && bin.exists() => bin,
        st => st,
    }
}

pub fn load(dir: &Path, options: &super::LoadOptions) -> Result<Vit> {
    let config_path = dir.join("config.json");
    let weights_path = weights_file(dir);
    if !config_path.exists() || !weights_path.exists() {
        bail!(
            "{}: a Hugging Face checkpoint directory needs config.json and model.safetensors (or pytorch_model.bin)",
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("{}: cannot read", config_path.display()))?;
    let json: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid JSON", config_path.display()))?;
    let kind = json
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("vit");
    // CLIPModel: the vision tower's settings are nested, the text tower beside them.
    let clip_model = kind == "clip";
    let (kind, vision_json) = match clip_model {
        true => (
            "clip_vision_model",
            sub_config(&json, "vision_config", &config_path)?,
        ),
        false => (kind, json.clone()),
    };
    let cfg = Config {
        path: &config_path,
        json: vision_json,
        defaults: Defaults::of(kind),
    };
    let swiglu = cfg
        .json
        .get("use_swiglu_ffn")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some((names, mut family)) = names_for(kind, &cfg.json, swiglu) else {
        let arch = json
            .pointer("/architectures/0")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let siglip = match kind.starts_with("siglip") {
            true => ": SigLIP (no CLS token, an attention-pooling head, a sigmoid per class) is not modelled yet",
            false => "",
        };
        bail!(
            "{}: model_type {kind:?} ({arch}) is not supported{siglip} (vit, deit, clip, clip_vision_model, dinov2, dinov2_with_registers)",
            config_path.display()
        );
    };
    family.activation = cfg.activation(family)?;
    if clip_model {
        family.name = "CLIP (vision and text towers)";
    }
    let mut tensors = Tensors::read(&weights_path)?;
    // A backbone saved alone (`Dinov2Model`, `ViTModel`) has no root prefix.
    let root = match tensors.has_prefix(names.root) {
        true => names.root,
        false => "",
    };
    family.distillation = tensors.contains(&join(root, "embeddings.distillation_token"));
    if family.distillation {
        family.name = "DeiT (distilled)";
        family.readout = Readout::ClsAndDistillation;
    }
    let fc1 = join(
        root,
        &format!("{}.0.{}.weight", names.layers, names.block.fc1),
    );
    let f = tensors.dim(&fc1, 0)? / family.activation.fc1_width(1);
    let trained = cfg.int("image_size")?;
    let dinov2 = kind.starts_with("dinov2");
    let config = VitConfig {
        image_size: run_size(
            options,
            dinov2,
            trained,
            &dir.join("preprocessor_config.json"),
        )?,
        patch_size: cfg.int("patch_size")?,
        channels: cfg.int("num_channels").unwrap_or(3),
        hidden: cfg.int("hidden_size")?,
        layers: cfg.int("num_hidden_layers")?,
        heads: cfg.int("num_attention_heads")?,
        intermediate: f,
        classes: 1,
        layer_norm_eps: cfg.eps(),
        family,
    };
    let at_trained = VitConfig {
        image_size: trained,
        ..config.clone()
    };
    for c in [&at_trained, &config] {
        super::check_config(c).with_context(|| config_path.display().to_string())?;
    }
    let (patch_embed, prefix, pos_embed) = embeddings(&mut tensors, &config, trained, kind, root)?;
    let d = config.hidden;
    let eps = config.layer_norm_eps;
    let norm_pre = match family.norm_pre {
        true => Some(tensors.pp(root).norm("pre_layrnorm", d, eps)?),
        false => None,
    };
    let blocks = (0..config.layers)
        .map(|i| {
            let mut b = tensors.pp(&join(root, &format!("{}.{i}", names.layers)));
            names.block.block(&mut b, d, f, eps, family.activation)
        })
        .collect::<Result<Vec<Block>>>()?;
    let norm = tensors.pp(root).norm(names.norm, d, eps)?;
    let text = match clip_model {
        true => Some(text_tower(&mut tensors, &json, &config_path, dir)?),
        false => None,
    };
    let mut config = config;
    let (head, zero_shot, names_of_classes) =
        head(&mut tensors, &cfg.json, &mut config, options, text)?;
    check_consumed(&tensors)?;
    let normalization = read_preprocessor(&dir.join("preprocessor_config.json"))?;
    assemble(Vit {
        neuron_tokens: config.family.neuron_tokens(),
        config,
        patch_embed,
        prefix,
        pos_embed,
        norm_pre,
        blocks,
        norm,
        head,
        zero_shot,
        compat: Compat::Principled,
        unit: crate::model::site::Activation::MlpPost,
        layout: Layout::HuggingFace,
        class_names: names_of_classes,
        normalization,
    })
}

/// `json[key]`, a nested config (CLIPModel's `vision_config`, `text_config`).
fn sub_config(json: &Value, key: &str, path: &Path) -> Result<Value> {
    json.get(key)
        .filter(|v| v.is_object())
        .cloned()
        .with_context(|| format!("{}: model_type clip without its {key}", path.display()))
}

/// The image size to run at: `--image-size`; for DINOv2 the centre crop of its
/// `preprocessor_config.json` (what its image processor feeds it: 224 for a
/// checkpoint trained at 518); else the size the config says. Only DINOv2's position
/// embeddings are interpolated (as its library does at every forward).
fn run_size(
    options: &super::LoadOptions,
    dinov2: bool,
    trained: usize,
    preprocessor: &Path,
) -> Result<usize> {
    match (options.image_size, dinov2) {
        (Some(size), true) => Ok(size),
        (Some(size), false) if size != trained => bail!(
            "--image-size {size}: position embeddings are interpolated for DINOv2 checkpoints only (this one runs at {trained})"
        ),
        (_, true) => Ok(crop_size(preprocessor)?.unwrap_or(trained)),
        (_, false) => Ok(trained),
    }
}

/// `crop_size` of a `preprocessor_config.json` that centre-crops to a square.
fn crop_size(path: &Path) -> Result<Option<usize>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    if json.get("do_center_crop").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    let side = |k: &str| {
        json.pointer(&format!("/crop_size/{k}"))
            .and_then(Value::as_u64)
    };
    Ok(match (side("height"), side("width")) {
        (Some(h), Some(w)) if h == w => Some(h as usize),
        _ => None,
    })
}

/// `CLIPModel`'s text tower (`text_model.*`, `text_projection`, `logit_scale`).
fn text_tower(t: &mut Tensors, json: &Value, path: &Path, dir: &Path) -> Result<Text> {
    let cfg = Config {
        path,
        json: sub_config(json, "text_config", path)?,
        defaults: Defaults::of("clip_text_model"),
    };
    let text_config = TextConfig {
        heads: cfg.int("num_attention_heads")?,
        activation: cfg.activation(Family::VIT)?,
        eps: cfg.eps(),
    };
    let e = t.dim("text_projection.weight", 0)?;
    let w = t.dim("text_model.embeddings.token_embedding.weight", 1)?;
    let projection = t.pp("").weight_only("text_projection", &[e, w])?;
    let tower = TextTower::load(
        &mut t.pp("text_model"),
        &CLIP_TEXT,
        &text_config,
        projection,
    )?;
    Ok(Text {
        tower,
        scale: super::zero_shot::logit_scale(t)?,
        folder: dir.to_path_buf(),
        eot: cfg.int("eos_token_id").ok().map(|e| e as u32),
    })
}

/// The head, the zero-shot classifier of a CLIP tower, and the class names; sets
/// the classes (and a probe's readout) in `c`.
#[allow(clippy::type_complexity)]
fn head(
    t: &mut Tensors,
    json: &Value,
    c: &mut VitConfig,
    options: &super::LoadOptions,
    text: Option<Text>,
) -> Result<(Linear, Option<ZeroShot>, Option<Vec<String>>)> {
    let d = c.hidden;
    let file = t.file().to_path_buf();
    if c.family.zero_shot && t.contains("visual_projection.weight") {
        let embedding = t.dim("visual_projection.weight", 0)?;
        let head = t.pp("").weight_only("visual_projection", &[embedding, d])?;
        let (zero_shot, names) = super::zero_shot::classifier(options, embedding, &file, text)?;
        c.classes = zero_shot.text.len() / embedding;
        return Ok((head, Some(zero_shot), names));
    }
    // A CLIP vision tower saved without its projection is a backbone.
    c.family.zero_shot = false;
    let classifier = ["classifier.weight", "cls_classifier.weight"]
        .into_iter()
        .find(|n| t.contains(n));
    let Some(classifier) = classifier else {
        let Some(probe) = &options.head else {
            bail!("{}: no classifier (a backbone saved without its head): pass --head W.npy[,b.npy], a linear probe on its features", file.display());
        };
        super::zero_shot::refuse_classifier(options, &file)?;
        let (head, readout) = probe.read(d)?;
        c.family.readout = readout;
        c.family.name = match c.family.name {
            "CLIP vision tower" => "CLIP vision tower + linear probe",
            n if n.starts_with("DINOv2") => "DINOv2 backbone + linear probe",
            _ => "backbone + linear probe",
        };
        c.classes = head.b.len();
        return Ok((head, None, None));
    };
    super::zero_shot::refuse_classifier(options, &file)?;
    if options.head.is_some() {
        bail!(
            "{}: --head is for a backbone saved without a head; this checkpoint has {classifier}",
            file.display()
        );
    }
    let classes = t.dim(classifier, 0)?;
    let mut root = t.pp("");
    let head = if c.family.distillation {
        let cls = root.linear("cls_classifier", classes, d)?;
        let dist = root.linear("distillation_classifier", classes, d)?;
        average_heads(&cls, &dist, d)
    } else {
        root.linear("classifier", classes, c.family.readout.width(d))?
    };
    c.classes = classes;
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

/// The patch embedding, the prefix tokens `[prefix, d]` and the position
/// embedding `[tokens, d]` of each model type; DINOv2's positions, trained at
/// `trained` pixels, resampled to the run's patch grid.
fn embeddings(
    t: &mut Tensors,
    c: &VitConfig,
    trained: usize,
    kind: &str,
    root: &str,
) -> Result<(Linear, Vec<f32>, Vec<f32>)> {
    let (d, ch, p, tokens) = (c.hidden, c.channels, c.patch_size, c.tokens());
    let patch_shape = [d, ch, p, p];
    let mut e = t.pp(&join(root, "embeddings"));
    if kind == "clip_vision_model" {
        let patch = e.weight_only("patch_embedding", &patch_shape)?;
        let cls = e.take("class_embedding", &[d])?;
        let pos = e.take("position_embedding.weight", &[tokens, d])?;
        return Ok((patch, cls, pos));
    }
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
    let (from, to) = (trained / p, c.image_size / p);
    let pos = e.take("position_embeddings", &[1, 1 + from * from, d])?;
    let grid = match from == to {
        true => pos[d..].to_vec(),
        false => {
            let filter = match kind {
                "dinov2" => Bicubic::Plain,
                _ => Bicubic::Antialiased,
            };
            interpolate::resample(&pos[d..], d, from, to, filter)
        }
    };
    let mut full = pos[..d].to_vec();
    full.extend(std::iter::repeat_n(0.0, fam.registers * d));
    full.extend_from_slice(&grid);
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
