//! timm `VisionTransformer` state dicts (fused `qkv`), from `.safetensors` or a
//! PyTorch `.pth`: the plain ViT (`norm` before a CLS head), MAE's fine-tuned form
//! (`fc_norm` after the mean of the patch tokens, no `norm`), DeiT distilled
//! (`dist_token`, `head_dist`), register tokens, layer scale and SwiGLU (DINOv2).
//! Dimensions come from shapes; the head count from `--heads`, a `config.json`
//! beside the file (`num_heads`), or the ViT convention of 64-wide heads.

use super::config::Json;
use super::{
    assemble, average_heads, block_count, check_consumed, config_from_shapes, fold_scale, Scope,
    Tensors,
};
use crate::model::family::{Compat, Family, FfnActivation, Readout};
use crate::model::vit::{
    Block, Layout, Linear, Normalization, Vit, VitConfig, Weights, IMAGENET_MEAN, IMAGENET_STD,
};
use anyhow::{bail, Context, Result};
use std::path::Path;

pub fn load(mut tensors: Tensors, options: &super::LoadOptions) -> Result<Vit> {
    let file = tensors.file().to_path_buf();
    let layers = block_count(&tensors, "blocks.", ".");
    let patch_shape = tensors.shape("patch_embed.proj.weight")?.to_vec();
    let [d, channels, p, _] = patch_shape[..] else {
        bail!("{}: patch_embed.proj.weight must be 4-D", file.display())
    };
    let family = family_of(&tensors)?;
    let f = tensors.dim("blocks.0.mlp.fc2.weight", 1)?;
    let classes = tensors.dim("head.weight", 0)?;
    let positions = tensors.dim("pos_embed", 1)?;
    // timm embeds positions for every prefix token, for CLS only, or for none
    // (`no_embed_class`): the rest is a square grid of patches.
    let prefix = family.prefix_tokens();
    let Some(with_position) = [prefix, 1, 0]
        .into_iter()
        .find(|&k| is_square(positions.saturating_sub(k)) && positions > k)
    else {
        bail!("{}: pos_embed has {positions} rows: not a square grid of patches after the prefix tokens", file.display());
    };
    let beside = Beside::read(&file)?;
    let heads = match options.heads.or(beside.heads) {
        Some(h) => h,
        None if d % 64 == 0 => d / 64,
        None => bail!("{}: timm files store no head count and width {d} is not a multiple of 64: pass --heads", file.display()),
    };
    let mut config = config_from_shapes(
        [d, channels, p, p],
        positions - with_position,
        layers,
        heads,
        f,
        classes,
    )
    .with_context(|| file.display().to_string())?;
    config.family = family;
    let patch_embed = tensors.take_linear_reshaped("patch_embed.proj", &[d, channels, p, p])?;
    let mut prefix_tokens = tensors.take("cls_token", &[1, 1, d])?;
    if family.distillation {
        prefix_tokens.extend(tensors.take("dist_token", &[1, 1, d])?);
    }
    if family.registers > 0 {
        prefix_tokens.extend(tensors.take("reg_token", &[1, family.registers, d])?);
    }
    let pos = tensors.take("pos_embed", &[1, positions, d])?;
    let mut pos_embed = pos[..with_position * d].to_vec();
    pos_embed.extend(std::iter::repeat_n(0.0, (prefix - with_position) * d));
    pos_embed.extend_from_slice(&pos[with_position * d..]);
    let blocks = (0..layers)
        .map(|i| block(&mut tensors.pp(&format!("blocks.{i}")), &config))
        .collect::<Result<Vec<Block>>>()?;
    let mut root = tensors.pp("");
    let norm_name = if family.readout == Readout::MeanPatches {
        "fc_norm"
    } else {
        "norm"
    };
    let norm = root.norm(norm_name, d, config.layer_norm_eps)?;
    let mut head = root.linear("head", classes, d)?;
    if family.distillation {
        head = average_heads(&head, &root.linear("head_dist", classes, d)?, d);
    }
    check_consumed(&tensors)?;
    let layout = match file.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Layout::Timm,
        _ => Layout::PyTorch,
    };
    assemble(Vit {
        config,
        weights: Weights {
            patch_embed,
            prefix: prefix_tokens,
            pos_embed,
            norm_pre: None,
            blocks,
            norm,
            head,
            zero_shot: None,
        },
        gpu: None,
        compat: Compat::Principled,
        neuron_tokens: family.neuron_tokens(),
        unit: crate::model::site::Activation::MlpPost,
        layout,
        class_names: beside.classes,
        normalization: beside.normalization,
    })
}

fn is_square(n: usize) -> bool {
    let r = (n as f64).sqrt().round() as usize;
    r * r == n
}

/// The family a timm state dict's names tell: the readout (`norm` before a CLS
/// head, or MAE's `fc_norm` after the patch mean), a distillation token with its
/// `head_dist` (DeiT), register tokens (`reg_token`), layer scale (`ls1.gamma`),
/// SwiGLU (`fc1_g`/`fc1_x`, or a packed `fc1` twice as wide as fc2's input, gate
/// first as timm's `SwiGLUPacked`).
fn family_of(t: &Tensors) -> Result<Family> {
    let file = t.file();
    let mut family = match (t.contains("norm.weight"), t.contains("fc_norm.weight")) {
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
    if t.contains("dist_token") {
        family.distillation = true;
        family.readout = Readout::ClsAndDistillation;
        family.name = "DeiT (distilled)";
    }
    if t.contains("reg_token") {
        family.registers = t.shape("reg_token")?.get(1).copied().unwrap_or(0);
        family.name = "ViT with registers (DINOv2)";
    }
    family.layer_scale = t.contains("blocks.0.ls1.gamma");
    let fc1 = t
        .shape("blocks.0.mlp.fc1.weight")
        .map(|s| s[0])
        .unwrap_or(0);
    let fc2_in = t
        .shape("blocks.0.mlp.fc2.weight")?
        .get(1)
        .copied()
        .unwrap_or(0);
    if t.contains("blocks.0.mlp.fc1_g.weight") || fc1 == 2 * fc2_in {
        family.activation = FfnActivation::SwiGlu;
    }
    Ok(family)
}

/// One block: a split SwiGLU's gate and up projections fused, layer scales folded.
fn block(b: &mut Scope, c: &VitConfig) -> Result<Block> {
    let (d, f, eps) = (c.hidden, c.intermediate, c.layer_norm_eps);
    let mut proj = b.linear("attn.proj", d, d)?;
    let mut fc2 = b.linear("mlp.fc2", d, f)?;
    if c.family.layer_scale {
        fold_scale(&mut proj, &b.take("ls1.gamma", &[d])?);
        fold_scale(&mut fc2, &b.take("ls2.gamma", &[d])?);
    }
    let fc1 = match c.family.activation {
        FfnActivation::SwiGlu if b.contains("mlp.fc1_g.weight") => {
            let (gate, up) = (b.linear("mlp.fc1_g", f, d)?, b.linear("mlp.fc1_x", f, d)?);
            Linear {
                w: [gate.w, up.w].concat(),
                b: [gate.b, up.b].concat(),
            }
        }
        activation => b.linear("mlp.fc1", activation.fc1_width(f), d)?,
    };
    Ok(Block {
        ln1: b.norm("norm1", d, eps)?,
        qkv: b.linear("attn.qkv", 3 * d, d)?,
        proj,
        ln2: b.norm("norm2", d, eps)?,
        fc1,
        fc2,
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
        if !path.exists() {
            return Ok(none);
        }
        let value = crate::files::read_json(&path)?;
        let root = Json::new(&path, &value);
        // timm writes its settings at the top, or under model_args / pretrained_cfg.
        let scopes = [
            Some(Json::new(&path, &value)),
            root.object("model_args")?,
            root.object("pretrained_cfg")?,
        ];
        let find = |keys: &[&'static str]| {
            (scopes.iter().flatten()).find_map(|scope| {
                keys.iter()
                    .find(|k| scope.get(k).is_some())
                    .map(|k| (scope, *k))
            })
        };
        let heads = match find(&["num_heads"]) {
            Some((scope, key)) => scope.uint(key, 1)?,
            None => None,
        };
        let classes = match find(&["classes", "label_names"]) {
            Some((scope, key)) => Some(scope.names(key)?),
            None => None,
        };
        let mean = find(&["image_mean", "mean"]);
        let std = find(&["image_std", "std"]);
        let normalization = match (mean, std) {
            (None, None) => none.normalization,
            (mean, std) => Normalization {
                mean: mean
                    .map_or(Ok(None), |(scope, key)| scope.triple(key))?
                    .unwrap_or(IMAGENET_MEAN),
                std: std
                    .map_or(Ok(None), |(scope, key)| scope.std(key))?
                    .unwrap_or(IMAGENET_STD),
                geometry: Default::default(),
                source: path.display().to_string(),
            },
        };
        Ok(Beside {
            heads,
            classes,
            normalization,
        })
    }
}

/// Whether the head count of the timm file `file` is a guess (width / 64): no
/// `--heads` and no `num_heads` in a config.json beside it.
pub(super) fn heads_guessed(file: &Path, options: &super::LoadOptions) -> Result<bool> {
    Ok(options.heads.is_none() && Beside::read(file)?.heads.is_none())
}
