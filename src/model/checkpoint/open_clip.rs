//! open_clip state dicts (`open_clip_model.safetensors`, `open_clip_pytorch_model.bin`,
//! a `.pt` holding one under `state_dict`): the vision tower (`visual.*`) and the
//! text tower beside it, which computes the zero-shot class rows. The
//! `open_clip_config.json` open_clip saves beside its weights says the activation
//! (`quick_gelu`), the head widths and the preprocessing; without it the activation
//! must be given (`--activation`), and the rest is OpenAI CLIP's.

use super::config::Json;
use super::text::{Reads, TextConfig, TextNames, TextTower};
use super::zero_shot::Text;
use super::{
    assemble, check_consumed, config_from_shapes, BlockNames, LoadOptions, Loaded, Qkv, Tensors,
};
use crate::model::family::{Family, FfnActivation, Probability};
use crate::model::vit::{Block, Filter, Geometry, Layout, Normalization, Vit, Weights};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The configuration open_clip saves beside its weights.
pub(super) const CONFIG: &str = "open_clip_config.json";

/// open_clip's `ResidualAttentionBlock` (`nn.MultiheadAttention` inside), in both towers.
const BLOCK: BlockNames = BlockNames {
    qkv: Qkv::Fused {
        weight: "attn.in_proj_weight",
        bias: "attn.in_proj_bias",
    },
    out: "attn.out_proj",
    ln1: "ln_1",
    ln2: "ln_2",
    fc1: "mlp.c_fc",
    fc2: "mlp.c_proj",
    scales: None,
};

const TEXT: TextNames = TextNames {
    token_embedding: "token_embedding.weight",
    positions: "positional_embedding",
    layers: "transformer.resblocks",
    block: BLOCK,
    final_norm: "ln_final",
};

/// open_clip's LayerNorm epsilon (PyTorch's default).
const EPS: f32 = 1e-5;
/// open_clip's defaults: OpenAI's mean and std.
const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

pub fn load(mut tensors: Tensors, options: &LoadOptions) -> Result<Vit> {
    let file = tensors.file().to_path_buf();
    if options.image_size.is_some() {
        bail!("{}: --image-size interpolates the position embeddings of Hugging Face DINOv2 checkpoints only", file.display());
    }
    if options.head.is_some() {
        bail!("{}: --head is for a backbone saved without a head; open_clip's CLIP classifies zero-shot (--classes, --classifier)", file.display());
    }
    let cfg = Beside::read(&file)?;
    let activation = cfg.activation(&file, options.activation)?;
    let mut v = tensors.pp("visual");
    let [d, channels, p, _] = v.shape_n::<4>("conv1.weight")?;
    let [positions, _] = v.shape_n("positional_embedding")?;
    let layers = v.count("transformer.resblocks");
    let f = v.dim("transformer.resblocks.0.mlp.c_fc.weight", 0)?;
    let heads = match options.heads.or(cfg.head_width.map(|w| d / w.max(1))) {
        Some(h) => h,
        None if d % 64 == 0 => d / 64,
        None => bail!("{}: width {d} is not a multiple of open_clip's 64-wide heads, and no {CONFIG} is beside it: pass --heads", file.display()),
    };
    let mut config = config_from_shapes(
        [d, channels, p, p],
        positions.saturating_sub(1),
        layers,
        heads,
        f,
        1,
    )
    .with_context(|| file.display().to_string())?;
    config.layer_norm_eps = EPS;
    config.family = Family {
        name: "CLIP (open_clip)",
        activation,
        norm_pre: true,
        zero_shot: true,
        ..Family::VIT
    };
    let patch_embed = v.weight_only("conv1", &[d, channels, p, p])?;
    let prefix = v.take("class_embedding", &[d])?;
    let pos_embed = v.take("positional_embedding", &[positions, d])?;
    let norm_pre = Some(v.norm("ln_pre", d, EPS)?);
    let blocks = (0..layers)
        .map(|i| {
            BLOCK.block(
                &mut v.pp(&format!("transformer.resblocks.{i}")),
                d,
                f,
                EPS,
                activation,
            )
        })
        .collect::<Result<Vec<Block>>>()?;
    let norm = v.norm("ln_post", d, EPS)?;
    let head = v.matmul_param("proj")?;
    let text = text_tower(&mut tensors, &cfg, activation)?;
    let (zero_shot, class_names) = super::zero_shot::classifier(
        options,
        head.b.len(),
        &file,
        Some(text),
        Probability::Softmax,
    )?;
    config.classes = zero_shot.text.len() / head.b.len();
    check_consumed(&tensors)?;
    assemble(Loaded {
        normalization: cfg.normalization(config.image_size),
        config,
        weights: Weights {
            patch_embed,
            prefix,
            pos_embed,
            norm_pre,
            blocks,
            norm,
            pool: None,
            head: Some(head),
            zero_shot: Some(zero_shot),
        },
        layout: Layout::OpenClip,
        class_names,
    })
}

/// The text tower at the state dict's root, `text_projection` used as `x @ P`.
fn text_tower(t: &mut Tensors, cfg: &Beside, activation: FfnActivation) -> Result<Text> {
    let width = t.dim(TEXT.token_embedding, 1)?;
    let heads = match cfg.text_heads {
        Some(h) => h,
        None if width % 64 == 0 => width / 64,
        None => bail!(
            "{}: the text width {width} is not a multiple of 64 and no {CONFIG} says its heads",
            t.file().display()
        ),
    };
    let config = TextConfig {
        heads,
        activation,
        eps: EPS,
        reads: Reads::Eot,
    };
    let mut root = t.pp("");
    let projection = root.matmul_param("text_projection")?;
    let tower = TextTower::load(&mut root, &TEXT, &config, projection)?;
    Ok(Text {
        tower,
        calibration: super::zero_shot::calibration(t)?,
        folder: cfg.folder.clone(),
        eot: None,
    })
}

/// What `open_clip_config.json` says (`model_cfg`, `preprocess_cfg`).
struct Beside {
    path: Option<PathBuf>,
    folder: PathBuf,
    quick_gelu: Option<bool>,
    head_width: Option<usize>,
    text_heads: Option<usize>,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    resize: String,
}

impl Beside {
    fn read(file: &Path) -> Result<Beside> {
        let folder = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let path = folder.join(CONFIG);
        let mut beside = Beside {
            path: None,
            folder,
            quick_gelu: None,
            head_width: None,
            text_heads: None,
            mean: None,
            std: None,
            resize: "shortest".into(),
        };
        if !path.exists() {
            return Ok(beside);
        }
        let value = crate::files::read_json(&path)?;
        if !value.is_object() {
            bail!("{}: {value}: not a JSON object", path.display());
        }
        let json = Json::new(&path, &value);
        let model = json.object_or_empty("model_cfg")?;
        let vision = model.object_or_empty("vision_cfg")?;
        let text = model.object_or_empty("text_cfg")?;
        let preprocess = json.object_or_empty("preprocess_cfg")?;
        refuse_unmodelled(&vision, &text, &preprocess)?;
        beside.quick_gelu = Some(model.boolean("quick_gelu")?.unwrap_or(false));
        beside.head_width = Some(vision.uint("head_width", 1)?.unwrap_or(64));
        beside.text_heads = Some(text.uint("heads", 1)?.unwrap_or(8));
        beside.mean = preprocess.triple("mean")?;
        beside.std = preprocess.std("std")?;
        if let Some(mode) = preprocess.string("resize_mode")? {
            beside.resize = mode.to_string();
        }
        beside.path = Some(path);
        Ok(beside)
    }

    /// `quick_gelu` of the config (open_clip's default: false), or `--activation`
    /// when there is no config; both must agree when both are there.
    fn activation(&self, file: &Path, given: Option<FfnActivation>) -> Result<FfnActivation> {
        let said = self.quick_gelu.map(|q| match q {
            true => FfnActivation::QuickGelu,
            false => FfnActivation::GeluErf,
        });
        match (said, given) {
            (Some(s), Some(g)) if s != g => bail!(
                "--activation {g:?}, but {} says {s:?}",
                self.path.as_deref().unwrap_or(file).display()
            ),
            (Some(a), _) | (None, Some(a)) => Ok(a),
            (None, None) => bail!(
                "{}: an open_clip state dict does not say its activation, and no {CONFIG} is beside it: pass --activation quick-gelu (OpenAI's weights, open_clip's `-quickgelu` models) or --activation gelu",
                file.display()
            ),
        }
    }

    /// open_clip's eval transform: resize the shortest edge to the image size
    /// (bicubic), centre crop (`resize_mode` `shortest`) or resize straight
    /// (`squash`); OpenAI's mean and std unless the config says others.
    fn normalization(&self, size: usize) -> Normalization {
        let shortest = self.resize != "squash";
        Normalization {
            mean: self.mean.unwrap_or(OPENAI_MEAN),
            std: self.std.unwrap_or(OPENAI_STD),
            geometry: Geometry {
                size: None,
                shortest_edge: shortest.then_some(size),
                crop: shortest,
                keep_size: false,
                filter: Filter::Bicubic,
            },
            source: match &self.path {
                Some(p) => p.display().to_string(),
                None => format!("OpenAI's (open_clip's default; no {CONFIG})"),
            },
        }
    }
}

/// Settings of open_clip models whose towers differ from CLIP's (a Hugging Face
/// text model or tokenizer, no causal mask, other poolings, a timm image tower):
/// refused, naming the field.
fn refuse_unmodelled(vision: &Json, text: &Json, preprocess: &Json) -> Result<()> {
    let path = vision.path.display();
    for (tower, key) in [
        (text, "hf_model_name"),
        (text, "hf_tokenizer_name"),
        (text, "no_causal_mask"),
        (text, "embed_cls"),
        (vision, "timm_model_name"),
        (vision, "attentional_pool"),
        (vision, "no_ln_pre"),
    ] {
        if tower.get(key).is_some_and(|x| x != false) {
            bail!(
                "{path}: {} is set: a tower this tool does not model",
                tower.name(key)
            );
        }
    }
    let pool = |tower: &Json, ok: &[&str]| -> Result<()> {
        match tower.string("pool_type")? {
            Some(p) if !ok.contains(&p) => bail!(
                "{path}: {} is {p:?}: only {} is modelled",
                tower.name("pool_type"),
                match ok {
                    ["tok"] => "the CLS token (tok)",
                    _ => "CLIP's EOT pooling (argmax, eos)",
                }
            ),
            _ => Ok(()),
        }
    };
    pool(text, &["argmax", "eos"])?;
    pool(vision, &["tok"])?;
    match preprocess.string("resize_mode")? {
        Some(mode) if !["shortest", "squash"].contains(&mode) => bail!(
            "{path}: {} is {mode:?}: not modelled (shortest, squash)",
            preprocess.name("resize_mode")
        ),
        _ => Ok(()),
    }
}

/// Whether the head count of the open_clip state dict `file` is a guess (width /
/// 64): no `--heads` and no `open_clip_config.json` beside it.
pub(super) fn heads_guessed(file: &Path, options: &LoadOptions) -> bool {
    options.heads.is_none() && !file.with_file_name(CONFIG).exists()
}
