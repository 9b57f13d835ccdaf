//! Hugging Face directories (`config.json` + `model.safetensors` or
//! `pytorch_model.bin`, as `save_pretrained` writes them; transformers 5 renames
//! some modules on load but writes the older names, which are the ones read here).
//! One table per `model_type` maps names to parts: ViT, DeiT (distilled or not), CLIP
//! (the vision tower with its projection, or `CLIPModel` with its text tower, which
//! computes the zero-shot class rows), SigLIP (`SiglipVisionModel`, or `SiglipModel`
//! with its text tower: no CLS token, an attention-pooling head, a sigmoid per
//! class), DINOv2 (with or without registers, GELU or SwiGLU, at any image size),
//! and any of them saved as a backbone without its head (with a `--head` probe).

use super::config::Json;
use super::interpolate::{self, Bicubic};
use super::text::{Reads, TextConfig, TextNames, TextTower};
use super::zero_shot::Text;
use super::{assemble, average_heads, check_consumed, join, BlockNames, Loaded, Qkv, Tensors};
use crate::model::family::{Family, FfnActivation, Probability, Readout};
use crate::model::vit::{AttentionPool, Block, Layout, Linear, Vit, VitConfig, Weights, ZeroShot};
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

/// `CLIPModel`'s and `SiglipModel`'s text tower, under `text_model`.
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
        "siglip_vision_model" => (
            Names {
                root: "vision_model",
                layers: "encoder.layers",
                block: CLIP_BLOCK,
                norm: "post_layernorm",
            },
            Family::SIGLIP,
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

/// A model's config.json (or one of `CLIPModel`'s nested configs), with the model
/// type's defaults for the fields it leaves out.
struct Config<'a> {
    json: Json<'a>,
    defaults: Defaults,
}

/// What transformers assumes for a model type when its config leaves a field out.
#[derive(Clone, Copy)]
struct Defaults {
    activation: &'static str,
    eps: f32,
}

impl Defaults {
    fn of(kind: &str) -> Defaults {
        match kind {
            "clip_vision_model" | "clip_text_model" => Defaults {
                activation: "quick_gelu",
                eps: 1e-5,
            },
            "siglip_vision_model" | "siglip_text_model" => Defaults {
                activation: "gelu_pytorch_tanh",
                eps: 1e-6,
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
    fn eps(&self) -> Result<f32> {
        Ok(self
            .json
            .positive("layer_norm_eps")?
            .unwrap_or(self.defaults.eps))
    }

    /// `hidden_act`: Hugging Face's names of the activations modelled.
    fn activation(&self, family: Family) -> Result<FfnActivation> {
        if family.activation == FfnActivation::SwiGlu {
            return Ok(FfnActivation::SwiGlu);
        }
        let act = self.json.string("hidden_act")?;
        Ok(match act.unwrap_or(self.defaults.activation) {
            "gelu" => FfnActivation::GeluErf,
            "quick_gelu" => FfnActivation::QuickGelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => FfnActivation::GeluTanh,
            other => bail!(
                "{}: hidden_act is {other:?}: not supported (gelu, quick_gelu, gelu_pytorch_tanh)",
                self.json.path.display()
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
            "{}: a Hugging Face checkpoint directory needs config.json and model.safetensors (or pytorch_model.bin){}",
            dir.display(),
            super::other_checkpoints(dir)
        );
    }
    let json = crate::files::read_json(&config_path)?;
    if !json.is_object() {
        bail!("{}: {json}: not a JSON object", config_path.display());
    }
    let top = Json::new(&config_path, &json);
    let kind = top.string("model_type")?.unwrap_or("vit");
    // CLIPModel, SiglipModel: the vision tower's settings are nested, the text
    // tower beside them.
    let towers = Towers::of(kind);
    let (kind, vision) = match towers {
        Some(t) => (t.vision, sub_config(&top, "vision_config")?),
        None => (kind, Json::new(&config_path, &json)),
    };
    let cfg = Config {
        json: vision,
        defaults: Defaults::of(kind),
    };
    let swiglu = cfg.json.boolean("use_swiglu_ffn")?.unwrap_or(false);
    cfg.json.uint("num_register_tokens", 0)?;
    let Some((names, mut family)) = names_for(kind, cfg.json.value, swiglu) else {
        let arch = json
            .pointer("/architectures/0")
            .and_then(Value::as_str)
            .unwrap_or("?");
        bail!(
            "{}: model_type {kind:?} ({arch}) is not supported (vit, deit, clip, clip_vision_model, siglip, siglip_vision_model, dinov2, dinov2_with_registers)",
            config_path.display()
        );
    };
    if let Some(heads) = options.heads {
        bail!(
            "--heads {heads}: a Hugging Face checkpoint's config.json gives its head count ({}); --heads is for timm and .pth files",
            cfg.json.uint("num_attention_heads", 0)?.map_or("none".into(), |h| h.to_string())
        );
    }
    family.activation = cfg.activation(family)?;
    if let Some(t) = towers {
        family.name = t.name;
    }
    if cfg.json.boolean("vision_use_head")? == Some(false) {
        bail!(
            "{}: vision_use_head is false: a SigLIP vision tower without its attention-pooling head (its pooled output, what it classifies zero-shot, is that head's), which this tool does not model",
            config_path.display()
        );
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
    let trained = cfg.json.size("image_size")?;
    let preprocessor = dir.join("preprocessor_config.json");
    let sizes = RunSize::of(options, kind, trained, &preprocessor)?;
    let config = VitConfig {
        image_size: sizes.run,
        patch_size: cfg.json.size("patch_size")?,
        channels: cfg.json.uint("num_channels", 1)?.unwrap_or(3),
        hidden: cfg.json.size("hidden_size")?,
        layers: cfg.json.size("num_hidden_layers")?,
        heads: cfg.json.size("num_attention_heads")?,
        intermediate: f,
        classes: 1,
        layer_norm_eps: cfg.eps()?,
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
    let pool = match family.readout {
        Readout::AttentionPool => Some(attention_pool(
            &mut tensors.pp(&join(root, "head")),
            &config,
        )?),
        _ => None,
    };
    let text = match towers {
        Some(t) => Some(text_tower(&mut tensors, &top, dir, t)?),
        None => None,
    };
    let mut config = config;
    let (head, zero_shot, names_of_classes) =
        head(&mut tensors, &cfg.json, &mut config, options, text)?;
    check_consumed(&tensors)?;
    let normalization = super::config::rescaled(
        super::config::preprocessor(&preprocessor, sizes.processor)?,
        sizes.processor,
        sizes.run,
    );
    assemble(Loaded {
        config,
        weights: Weights {
            patch_embed,
            prefix,
            pos_embed,
            norm_pre,
            blocks,
            norm,
            pool,
            head,
            zero_shot,
        },
        layout: Layout::HuggingFace,
        class_names: names_of_classes,
        normalization,
    })
}

/// A model type holding a vision and a text tower, each with a config of its own.
#[derive(Clone, Copy)]
struct Towers {
    /// The vision tower's model type.
    vision: &'static str,
    /// The text tower's.
    text: &'static str,
    /// The family's name, for people.
    name: &'static str,
    text_names: &'static TextNames,
    /// The text projection: `text_projection` (no bias), `text_model.head`.
    projection: &'static str,
}

impl Towers {
    fn of(kind: &str) -> Option<Towers> {
        match kind {
            "clip" => Some(Towers {
                vision: "clip_vision_model",
                text: "clip_text_model",
                name: "CLIP (vision and text towers)",
                text_names: &CLIP_TEXT,
                projection: "text_projection",
            }),
            "siglip" => Some(Towers {
                vision: "siglip_vision_model",
                text: "siglip_text_model",
                name: "SigLIP (vision and text towers)",
                text_names: &CLIP_TEXT,
                projection: "text_model.head",
            }),
            _ => None,
        }
    }
}

/// SigLIP's attention-pooling head (`head.*` of its vision tower, as `scope`):
/// `probe`, `attention.in_proj_*` and `out_proj` (an `nn.MultiheadAttention` with
/// the blocks' head count), `layernorm`, `mlp.fc1`/`fc2` (the blocks' FFN width).
fn attention_pool(scope: &mut super::Scope, c: &VitConfig) -> Result<AttentionPool> {
    let (d, f, eps) = (c.hidden, c.intermediate, c.layer_norm_eps);
    if !scope.contains("probe") {
        bail!(
            "{}: no {}: a SigLIP vision tower saved without its attention-pooling head, which this tool does not model",
            scope.file().display(),
            scope.name("probe")
        );
    }
    Ok(AttentionPool {
        probe: scope.take("probe", &[1, 1, d])?,
        qkv: Linear {
            w: scope.take("attention.in_proj_weight", &[3 * d, d])?,
            b: scope.take("attention.in_proj_bias", &[3 * d])?,
        },
        proj: scope.linear("attention.out_proj", d, d)?,
        norm: scope.norm("layernorm", d, eps)?,
        fc1: scope.linear("mlp.fc1", c.family.activation.fc1_width(f), d)?,
        fc2: scope.linear("mlp.fc2", d, f)?,
    })
}

/// `key` of a config, a nested config (CLIPModel's `vision_config`, `text_config`).
fn sub_config<'a>(json: &Json<'a>, key: &str) -> Result<Json<'a>> {
    json.object(key)?
        .with_context(|| format!("{}: model_type clip without its {key}", json.path.display()))
}

/// The image size a model runs at, and the one its `preprocessor_config.json` is
/// made for.
struct RunSize {
    run: usize,
    processor: usize,
}

impl RunSize {
    /// `--image-size`; for DINOv2 the centre crop of its `preprocessor_config.json`
    /// (what its image processor feeds it: 224 for a checkpoint trained at 518);
    /// else the size the config says. Only DINOv2's position embeddings are
    /// interpolated (as its library does at every forward).
    fn of(
        options: &super::LoadOptions,
        kind: &str,
        trained: usize,
        preprocessor: &Path,
    ) -> Result<RunSize> {
        if !kind.starts_with("dinov2") {
            return match options.image_size {
                Some(size) if size != trained => bail!(
                    "--image-size {size}: position embeddings are interpolated for DINOv2 checkpoints only (this one runs at {trained})"
                ),
                _ => Ok(RunSize {
                    run: trained,
                    processor: trained,
                }),
            };
        }
        let processor = super::config::crop_side(preprocessor)?.unwrap_or(trained);
        Ok(RunSize {
            run: options.image_size.unwrap_or(processor),
            processor,
        })
    }
}

/// The text tower of `CLIPModel` (`text_model.*`, `text_projection`, `logit_scale`)
/// or `SiglipModel` (`text_model.*` with `text_model.head`, `logit_scale`,
/// `logit_bias`).
fn text_tower(t: &mut Tensors, top: &Json, dir: &Path, towers: Towers) -> Result<Text> {
    let cfg = Config {
        json: sub_config(top, "text_config")?,
        defaults: Defaults::of(towers.text),
    };
    let text_config = TextConfig {
        heads: cfg.json.size("num_attention_heads")?,
        activation: cfg.activation(Family::VIT)?,
        eps: cfg.eps()?,
        reads: match towers.text {
            "siglip_text_model" => Reads::LastPadded,
            _ => Reads::Eot,
        },
    };
    let proj = towers.projection;
    let e = t.dim(&format!("{proj}.weight"), 0)?;
    let w = t.dim("text_model.embeddings.token_embedding.weight", 1)?;
    let projection = match t.contains(&format!("{proj}.bias")) {
        true => t.pp("").linear(proj, e, w)?,
        false => t.pp("").weight_only(proj, &[e, w])?,
    };
    let tower = TextTower::load(
        &mut t.pp("text_model"),
        towers.text_names,
        &text_config,
        projection,
    )?;
    let eot = cfg.json.uint("eos_token_id", 0)?;
    Ok(Text {
        tower,
        calibration: super::zero_shot::calibration(t)?,
        folder: dir.to_path_buf(),
        eot: eot.map(|e| u32::try_from(e).unwrap_or(u32::MAX)),
    })
}

/// The head, the zero-shot classifier of a CLIP tower, and the class names; sets
/// the classes (and a probe's readout) in `c`.
#[allow(clippy::type_complexity)]
fn head(
    t: &mut Tensors,
    json: &Json,
    c: &mut VitConfig,
    options: &super::LoadOptions,
    text: Option<Text>,
) -> Result<(Option<Linear>, Option<ZeroShot>, Option<Vec<String>>)> {
    let d = c.hidden;
    let file = t.file().to_path_buf();
    let probability = c.family.probability;
    if c.family.zero_shot && t.contains("visual_projection.weight") {
        let embedding = t.dim("visual_projection.weight", 0)?;
        let head = t.pp("").weight_only("visual_projection", &[embedding, d])?;
        let (zero_shot, names) =
            super::zero_shot::classifier(options, embedding, &file, text, probability)?;
        c.classes = zero_shot.text.len() / embedding;
        return Ok((Some(head), Some(zero_shot), names));
    }
    // SigLIP: the pooled output is the embedding, classified zero-shot unless a
    // probe is given.
    if c.family.readout == Readout::AttentionPool {
        if let Some(probe) = &options.head {
            super::zero_shot::refuse_classifier(options, &file)?;
            let (head, readout) = probe.read(d)?;
            if readout != Readout::Cls {
                bail!(
                    "{}: a probe on SigLIP's pooled output reads {d} features, not {}",
                    probe.weight.display(),
                    head.w.len() / head.b.len()
                );
            }
            c.family = Family {
                name: "SigLIP vision tower + linear probe",
                zero_shot: false,
                probability: Probability::Softmax,
                ..c.family
            };
            c.classes = head.b.len();
            return Ok((Some(head), None, None));
        }
        let (zero_shot, names) =
            super::zero_shot::classifier(options, d, &file, text, probability)?;
        c.classes = zero_shot.text.len() / d;
        return Ok((None, Some(zero_shot), names));
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
        return Ok((Some(head), None, None));
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
    Ok((Some(head), None, class_names(json, classes)?))
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
    if kind == "siglip_vision_model" {
        // No CLS token: the positions are the patches'.
        let patch = Linear {
            w: e.take("patch_embedding.weight", &patch_shape)?,
            b: e.take("patch_embedding.bias", &[d])?,
        };
        let pos = e.take("position_embedding.weight", &[tokens, d])?;
        return Ok((patch, Vec::new(), pos));
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
