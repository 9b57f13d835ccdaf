//! timm `VisionTransformer` state dicts (fused `qkv`), from `.safetensors` or a
//! PyTorch `.pth`: the plain ViT (`norm` before a CLS head), MAE's fine-tuned form
//! (`fc_norm` after the mean of the patch tokens, no `norm`), DeiT distilled
//! (`dist_token`, `head_dist`), register tokens, layer scale and SwiGLU (DINOv2),
//! CLIP's image tower (`norm_pre`, `vit_*_clip_*`: its activation from the
//! architecture a `config.json` beside it names, else `--activation`), and a model
//! saved without its head (`num_classes=0`) with a `--head` probe.
//! Dimensions come from shapes; the head count from `--heads`, a `config.json`
//! beside the file (`num_heads`), or the ViT convention of 64-wide heads.

use super::config::Json;
use super::{
    assemble, average_heads, block_count, check_consumed, config_from_shapes, BlockNames, Loaded,
    Qkv, Tensors,
};
use crate::model::family::{Family, FfnActivation, Probability, Readout};
use crate::model::vit::{
    Block, Layout, Linear, Normalization, Vit, VitConfig, Weights, ZeroShot, IMAGENET_MEAN,
    IMAGENET_STD,
};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// A timm block's names.
const BLOCK: BlockNames = BlockNames {
    qkv: Qkv::Fused {
        weight: "attn.qkv.weight",
        bias: "attn.qkv.bias",
    },
    out: "attn.proj",
    ln1: "norm1",
    ln2: "norm2",
    fc1: "mlp.fc1",
    fc2: "mlp.fc2",
    scales: None,
};

pub fn load(mut tensors: Tensors, options: &super::LoadOptions) -> Result<Vit> {
    let file = tensors.file().to_path_buf();
    if options.image_size.is_some() {
        bail!("{}: --image-size interpolates the position embeddings of Hugging Face DINOv2 checkpoints only", file.display());
    }
    let layers = block_count(&tensors, "blocks.", ".");
    let patch_shape = tensors.shape("patch_embed.proj.weight")?.to_vec();
    let [d, channels, p, _] = patch_shape[..] else {
        bail!("{}: patch_embed.proj.weight must be 4-D", file.display())
    };
    let beside = Beside::read(&file)?;
    let family = family_of(&tensors, &beside, options)?;
    let f = tensors.dim("blocks.0.mlp.fc2.weight", 1)?;
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
        1,
    )
    .with_context(|| file.display().to_string())?;
    config.family = family;
    if family.norm_pre {
        // timm's CLIP towers: LayerNorm eps 1e-5, a patch embedding without bias.
        config.layer_norm_eps = 1e-5;
    }
    let patch_embed = match family.norm_pre {
        true => tensors
            .pp("")
            .weight_only("patch_embed.proj", &[d, channels, p, p]),
        false => tensors.take_linear_reshaped("patch_embed.proj", &[d, channels, p, p]),
    }?;
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
    let eps = config.layer_norm_eps;
    let names = BlockNames {
        scales: family.layer_scale.then_some(("ls1.gamma", "ls2.gamma")),
        ..BLOCK
    };
    let blocks = (0..layers)
        .map(|i| {
            names.block(
                &mut tensors.pp(&format!("blocks.{i}")),
                d,
                f,
                eps,
                family.activation,
            )
        })
        .collect::<Result<Vec<Block>>>()?;
    let norm_pre = match family.norm_pre {
        true => Some(tensors.pp("").norm("norm_pre", d, eps)?),
        false => None,
    };
    let norm_name = if family.readout == Readout::MeanPatches {
        "fc_norm"
    } else {
        "norm"
    };
    let norm = tensors.pp("").norm(norm_name, d, eps)?;
    let (head, zero_shot, class_names) = head(&mut tensors, &mut config, options, beside.classes)?;
    check_consumed(&tensors)?;
    let layout = match file.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Layout::Timm,
        _ => Layout::PyTorch,
    };
    assemble(Loaded {
        config,
        weights: Weights {
            patch_embed,
            prefix: prefix_tokens,
            pos_embed,
            norm_pre,
            blocks,
            norm,
            pool: None,
            head: Some(head),
            zero_shot,
        },
        layout,
        class_names,
        normalization: beside.normalization,
    })
}

/// The head: the file's (`head`, with `head_dist` averaged in for DeiT), used as a
/// CLIP projection with `--classifier`, or a `--head` probe for a backbone saved
/// without one. Sets the classes (and a probe's readout) in `c`.
#[allow(clippy::type_complexity)]
fn head(
    t: &mut Tensors,
    c: &mut VitConfig,
    options: &super::LoadOptions,
    names: Option<Vec<String>>,
) -> Result<(Linear, Option<ZeroShot>, Option<Vec<String>>)> {
    let (d, file) = (c.hidden, t.file().to_path_buf());
    if !c.family.norm_pre {
        super::zero_shot::refuse_classifier(options, &file)?;
    } else if options.classes.is_some() {
        bail!("{}: --classes needs the checkpoint's text tower, and timm files hold the image tower only: pass --classifier text.npy", file.display());
    }
    if !t.contains("head.weight") {
        let Some(probe) = &options.head else {
            bail!("{}: no head.weight (a backbone saved without its head): pass --head W.npy[,b.npy], a linear probe on its features", file.display());
        };
        super::zero_shot::refuse_classifier(options, &file)?;
        let (head, readout) = probe.read(d)?;
        c.family.readout = readout;
        c.family.name = "backbone + linear probe";
        c.classes = head.b.len();
        return Ok((head, None, None));
    }
    if options.head.is_some() {
        bail!(
            "{}: --head is for a backbone saved without a head; this file has head.weight",
            file.display()
        );
    }
    let classes = t.dim("head.weight", 0)?;
    let mut root = t.pp("");
    let mut head = root.linear("head", classes, d)?;
    if c.family.distillation {
        head = average_heads(&head, &root.linear("head_dist", classes, d)?, d);
    }
    if options.classifier.is_some() {
        c.family.zero_shot = true;
        let (zero_shot, names) =
            super::zero_shot::classifier(options, classes, &file, None, Probability::Softmax)?;
        c.classes = zero_shot.text.len() / classes;
        return Ok((head, Some(zero_shot), names));
    }
    if c.family.norm_pre && head.b.iter().all(|&b| b == 0.0) {
        bail!("{}: head.bias is all zeros: this looks like CLIP's image projection (timm's `.openai`/`.laion2b` tags), which classifies zero-shot: pass --classifier text.npy", file.display());
    }
    c.classes = classes;
    Ok((head, None, names))
}

fn is_square(n: usize) -> bool {
    let r = (n as f64).sqrt().round() as usize;
    r * r == n
}

/// The family a timm state dict's names tell: the readout (`norm` before a CLS
/// head, or MAE's `fc_norm` after the patch mean), a distillation token with its
/// `head_dist` (DeiT), register tokens (`reg_token`), layer scale (`ls1.gamma`),
/// SwiGLU (`fc1_g`/`fc1_x`, or a packed `fc1` twice as wide as fc2's input, gate
/// first as timm's `SwiGLUPacked`), CLIP's image tower (`norm_pre`).
fn family_of(t: &Tensors, beside: &Beside, options: &super::LoadOptions) -> Result<Family> {
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
    if t.contains("norm_pre.weight") {
        family.name = "CLIP image tower (timm)";
        family.norm_pre = true;
        family.activation = clip_activation(file, beside, options.activation)?;
    } else if let Some(a) = options.activation {
        bail!("{}: --activation {a:?} is for files that do not say their activation (timm's CLIP towers, open_clip without its config); this one is a {}", file.display(), family.name);
    }
    Ok(family)
}

/// A timm CLIP tower's activation: `--activation`, else the architecture named in a
/// `config.json` beside the file when it says quick GELU (`vit_*_clip_quickgelu_*`).
/// timm runs its other `vit_*_clip_*` models with GELU, but OpenAI's weights under
/// them (`.openai`) were trained with quick GELU, so the name alone does not say.
fn clip_activation(
    file: &Path,
    beside: &Beside,
    given: Option<FfnActivation>,
) -> Result<FfnActivation> {
    let arch = beside.architecture.as_deref().unwrap_or("");
    match given {
        Some(a) if arch.contains("quickgelu") && a != FfnActivation::QuickGelu => bail!(
            "{}: --activation {a:?}, but its architecture {arch} runs quick GELU",
            file.display()
        ),
        Some(a) => Ok(a),
        None if arch.contains("quickgelu") => Ok(FfnActivation::QuickGelu),
        None => bail!(
            "{}: norm_pre.weight marks timm's CLIP image tower, and its activation is not in the file{}: pass --activation quick-gelu (OpenAI's CLIP weights, as OpenAI and open_clip run them) or --activation gelu (as timm runs `vit_*_clip_*` without `quickgelu`, and LAION's weights)",
            file.display(),
            match arch {
                "" => String::new(),
                a => format!(" (architecture {a})"),
            }
        ),
    }
}

/// What a `config.json` beside a timm file says (timm stores none of it).
struct Beside {
    heads: Option<usize>,
    /// timm's model name (`architecture`).
    architecture: Option<String>,
    classes: Option<Vec<String>>,
    normalization: Normalization,
}

impl Beside {
    fn read(file: &Path) -> Result<Beside> {
        let path = file.with_file_name("config.json");
        let none = Beside {
            heads: None,
            architecture: None,
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
            architecture: match find(&["architecture"]) {
                Some((scope, key)) => scope.string(key)?.map(String::from),
                None => None,
            },
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
