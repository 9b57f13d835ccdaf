//! Loading a [`Vit`] from the checkpoint layouts, detected automatically. A loader
//! maps a layout's tensor names to the model's parts (through [`Scope`], a view
//! under a name prefix, and tables such as [`BlockNames`]) and must use every tensor
//! of the file: a tensor it does not know is an error naming it, and the family it
//! suggests.

mod google;
mod huggingface;
mod interpolate;
mod open_clip;
mod probe;
mod pytorch;
mod text;
mod timm;
mod tokenizer;
mod zero_shot;

use super::family::FfnActivation;
use super::vit::{Block, LayerNorm, Linear, Vit, VitConfig};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use super::vit::{IMAGENET_MEAN, IMAGENET_STD};
pub use probe::Probe;

/// What a checkpoint may not say about itself.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Attention heads, for timm files (which store no head count).
    pub heads: Option<usize>,
    /// A zero-shot classifier for a CLIP tower: a `.npy` of class text embeddings,
    /// `[classes, embedding]`, one row per class.
    pub classifier: Option<PathBuf>,
    /// Its logit scale (the multiplier; default: a `logit_scale.npy` beside the
    /// classifier, else the checkpoint's, else CLIP's 100).
    pub logit_scale: Option<f32>,
    /// Its class names, one per line.
    pub class_names: Option<PathBuf>,
    /// Zero-shot classes whose rows the checkpoint's own text tower computes from
    /// [`LoadOptions::prompts`] (a Hugging Face `CLIPModel`, open_clip).
    pub classes: Option<Vec<String>>,
    /// Prompt templates, `{}` standing for the class name; the embeddings of several
    /// are averaged as open_clip's `build_zero_shot_classifier` does. None:
    /// [`DEFAULT_PROMPT`].
    pub prompts: Vec<String>,
    /// The text tower's vocabulary: a `tokenizer.json` (or a folder holding one) or
    /// an open_clip merges file (default: the `tokenizer.json` of the checkpoint's
    /// folder, else OpenAI's CLIP vocabulary, bundled).
    pub tokenizer: Option<PathBuf>,
    /// The FFN activation of a file that does not say it (timm's CLIP towers; open_clip
    /// state dicts without their `open_clip_config.json`).
    pub activation: Option<FfnActivation>,
    /// The image size to run at, the position embeddings interpolated as the
    /// library does at every forward (DINOv2).
    pub image_size: Option<usize>,
    /// A linear head for a backbone saved without one.
    pub head: Option<Probe>,
}

/// The prompt CLIP's zero-shot evaluations use most.
pub const DEFAULT_PROMPT: &str = "a photo of a {}.";

/// Loads a Hugging Face, timm or open_clip directory, a timm `.safetensors`, a
/// PyTorch `.pth`/`.pt`/`.bin` state dict (timm or open_clip names), or a Google `.npz`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Vit> {
    // Device copies are keyed by host address, which the new weights may reuse.
    #[cfg(feature = "cuda")]
    super::gpu::forget_weights();
    check_options(options)?;
    if path.is_dir() {
        return load_dir(path, options);
    }
    if !path.exists() {
        bail!("{}: no such checkpoint file or directory", path.display());
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("npz") if options.classifier.is_some() || options.classes.is_some() || options.head.is_some() || options.image_size.is_some() || options.activation.is_some() => bail!(
            "{}: a Google ViT .npz has its own head and runs at its size: --classifier, --classes, --head, --image-size and --activation do not apply",
            path.display()
        ),
        Some("npz") => google::load(path),
        Some("safetensors" | "pth" | "pt" | "bin") => load_file(path, options),
        _ => bail!(
            "{}: unknown checkpoint layout: expected a directory, .safetensors, .pth/.pt/.bin or .npz",
            path.display()
        ),
    }
}

/// Options that only go with others.
fn check_options(o: &LoadOptions) -> Result<()> {
    if o.classes.is_none() && (!o.prompts.is_empty() || o.tokenizer.is_some()) {
        bail!("--prompt and --tokenizer go with --classes");
    }
    if o.class_names.is_some() && o.classifier.is_none() {
        bail!("--class-names goes with --classifier (with --classes the classes are their names)");
    }
    if o.logit_scale.is_some() && o.classifier.is_none() && o.classes.is_none() {
        bail!("--logit-scale goes with --classifier or --classes");
    }
    Ok(())
}

/// A state dict, its layout told by its names.
fn load_file(path: &Path, options: &LoadOptions) -> Result<Vit> {
    let tensors = Tensors::read(path)?;
    refuse_other_families(&tensors)?;
    if tensors.contains("blocks.0.attn.qkv.weight") {
        timm::load(tensors, options)
    } else if tensors.contains("visual.conv1.weight") {
        open_clip::load(tensors, options)
    } else if tensors.names().iter().any(|n| n.contains("embeddings.")) {
        bail!(
            "{}: Hugging Face weights need their config.json: pass the directory holding both",
            path.display()
        )
    } else {
        bail!(
            "{}: unknown checkpoint layout (neither timm `blocks.N.attn.qkv`, open_clip `visual.conv1` nor Hugging Face `embeddings.*` tensors); it holds {}",
            path.display(),
            shortened(&tensors.names())
        )
    }
}

/// A folder as Hugging Face (`config.json` with a `model_type`), timm's hub
/// (`config.json` naming an `architecture`, and `model.safetensors`) or open_clip's
/// (`open_clip_config.json` and its weights) save it.
fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Vit> {
    match Kind::of(dir)? {
        Kind::HuggingFace => huggingface::load(dir, options),
        Kind::Timm(weights) | Kind::OpenClip(weights) => load_file(&weights, options),
    }
}

/// What a checkpoint folder holds.
enum Kind {
    HuggingFace,
    Timm(PathBuf),
    OpenClip(PathBuf),
}

impl Kind {
    fn of(dir: &Path) -> Result<Kind> {
        let config = dir.join("config.json");
        if config.exists() {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("{}: cannot read", config.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid JSON", config.display()))?;
            if json.get("model_type").is_none() && json.get("architecture").is_some() {
                return Ok(Kind::Timm(dir.join("model.safetensors")));
            }
            return Ok(Kind::HuggingFace);
        }
        if dir.join(open_clip::CONFIG).exists() {
            let weights = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
                .iter()
                .map(|w| dir.join(w))
                .find(|w| w.exists())
                .with_context(|| {
                    format!("{}: open_clip_config.json without open_clip_model.safetensors or open_clip_pytorch_model.bin", dir.display())
                })?;
            return Ok(Kind::OpenClip(weights));
        }
        Ok(Kind::HuggingFace)
    }
}

/// The file holding a checkpoint folder's weights (what a fingerprint hashes).
pub fn weights_file(dir: &Path) -> PathBuf {
    match Kind::of(dir) {
        Ok(Kind::Timm(w) | Kind::OpenClip(w)) => w,
        _ => huggingface::weights_file(dir),
    }
}

/// Named tensors of one file, taken out one by one with shape checks.
pub(crate) struct Tensors {
    file: PathBuf,
    map: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Tensors {
    /// A `.safetensors` file, or a PyTorch `torch.save` state dict.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "safetensors") {
            Tensors::from_safetensors(path)
        } else {
            Tensors::from_pytorch(path)
        }
    }

    pub(crate) fn from_safetensors(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
        let mut map = HashMap::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                safetensors::Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|b| crate::numeric::f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                    .collect(),
                safetensors::Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                    .collect(),
                other => bail!(
                    "{}: tensor {name} has unsupported dtype {other:?}",
                    path.display()
                ),
            };
            map.insert(name, (view.shape().to_vec(), values));
        }
        Ok(Tensors {
            file: path.to_path_buf(),
            map,
        })
    }

    pub(crate) fn from_npz(path: &Path) -> Result<Self> {
        let mut map = HashMap::new();
        for (name, array) in super::npy::read_npz(path)? {
            let values = array
                .to_f32()
                .with_context(|| format!("{}: tensor {name}", path.display()))?;
            map.insert(name, (array.shape, values));
        }
        Ok(Tensors {
            file: path.to_path_buf(),
            map,
        })
    }

    /// The float tensors of a `torch.save` state dict (see `pytorch`).
    pub(crate) fn from_pytorch(path: &Path) -> Result<Self> {
        let map = pytorch::read(path)?
            .into_iter()
            .map(|(name, shape, values)| (name, (shape, values)))
            .collect();
        Ok(Tensors {
            file: path.to_path_buf(),
            map,
        })
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub(crate) fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self
            .map
            .get(name)
            .with_context(|| format!("{}: missing tensor {name}", self.file.display()))?
            .0)
    }

    /// Dimension `axis` of tensor `name`; an error when it has fewer.
    pub(crate) fn dim(&self, name: &str, axis: usize) -> Result<usize> {
        let shape = self.shape(name)?;
        shape.get(axis).copied().with_context(|| {
            format!(
                "{}: tensor {name} has shape {shape:?}, expected at least {} dimensions",
                self.file.display(),
                axis + 1
            )
        })
    }

    /// Removes `name`, checking it holds `shape`.
    pub(crate) fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (have, values) = self
            .map
            .remove(name)
            .with_context(|| format!("{}: missing tensor {name}", self.file.display()))?;
        if have != shape {
            bail!(
                "{}: tensor {name} has shape {have:?}, expected {shape:?}",
                self.file.display()
            );
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: tensor {name} holds a non-finite value ({}) at index {i}",
                self.file.display(),
                values[i]
            );
        }
        Ok(values)
    }

    pub(crate) fn take_linear(
        &mut self,
        weight: &str,
        bias: &str,
        out: usize,
        inp: usize,
    ) -> Result<Linear> {
        Ok(Linear {
            w: self.take(weight, &[out, inp])?,
            b: self.take(bias, &[out])?,
        })
    }

    /// A conv/patch weight of any rank flattened to `[shape[0], rest]`, with its bias.
    pub(crate) fn take_linear_reshaped(&mut self, prefix: &str, shape: &[usize]) -> Result<Linear> {
        Ok(Linear {
            w: self.take(&format!("{prefix}.weight"), shape)?,
            b: self.take(&format!("{prefix}.bias"), &shape[..1])?,
        })
    }

    pub(crate) fn take_norm(
        &mut self,
        weight: &str,
        bias: &str,
        dim: usize,
        eps: f32,
    ) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: self.take(weight, &[dim])?,
            beta: self.take(bias, &[dim])?,
            eps,
        })
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }
}

/// The float tensors of a PyTorch `torch.save` checkpoint, in file order.
pub fn read_pytorch_tensors(path: &Path) -> Result<Vec<pytorch::NamedTensor>> {
    pytorch::read(path)
}

/// `diag(scale) * layer`: a per-channel scale of the layer's output (layer scale),
/// folded into its weights.
pub(crate) fn fold_scale(layer: &mut Linear, scale: &[f32]) {
    let inp = layer.w.len() / scale.len().max(1);
    for ((row, b), s) in layer.w.chunks_exact_mut(inp).zip(&mut layer.b).zip(scale) {
        row.iter_mut().for_each(|w| *w *= s);
        *b *= s;
    }
}

/// `(cls(h0) + dist(h1)) / 2` (DeiT distilled) as one head on `[h0, h1]`.
pub(crate) fn average_heads(cls: &Linear, dist: &Linear, d: usize) -> Linear {
    let w = cls
        .w
        .chunks_exact(d)
        .zip(dist.w.chunks_exact(d))
        .flat_map(|(a, b)| a.iter().chain(b).map(|w| w / 2.0))
        .collect();
    let b = cls
        .b
        .iter()
        .zip(&dist.b)
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    Linear { w, b }
}

/// Stacks separate Q, K and V projections into one `[3d, d]` linear layer.
pub(crate) fn fuse_qkv(q: Linear, k: Linear, v: Linear) -> Linear {
    Linear {
        w: [q.w, k.w, v.w].concat(),
        b: [q.b, k.b, v.b].concat(),
    }
}

/// The configuration of a layout that stores none (timm, Google), read off tensor
/// shapes: the patch embedding as `[hidden, channels, patch, patch]`, and `tokens`
/// position embeddings, a square grid of patches plus CLS. ViT's LayerNorm epsilon.
pub(crate) fn config_from_shapes(
    [hidden, channels, patch, _]: [usize; 4],
    patches: usize,
    layers: usize,
    heads: usize,
    intermediate: usize,
    classes: usize,
) -> Result<VitConfig> {
    let grid = (patches as f64).sqrt().round() as usize;
    if grid * grid != patches || patches == 0 {
        bail!("the position embedding has {patches} patch rows: not a square grid");
    }
    let config = VitConfig {
        image_size: grid * patch,
        patch_size: patch,
        channels,
        hidden,
        layers,
        heads,
        intermediate,
        classes,
        layer_norm_eps: 1e-6,
        family: crate::model::Family::VIT,
    };
    check_config(&config)?;
    Ok(config)
}

/// Checks that a configuration describes a model that can run: every size at
/// least 1 and below 2^20 (so no product overflows), whole heads and patches.
pub(crate) fn check_config(c: &VitConfig) -> Result<()> {
    let sizes = [
        ("image size", c.image_size),
        ("patch size", c.patch_size),
        ("channels", c.channels),
        ("hidden size", c.hidden),
        ("layers", c.layers),
        ("heads", c.heads),
        ("FFN width", c.intermediate),
        ("classes", c.classes),
    ];
    if let Some((name, size)) = sizes.iter().find(|(_, s)| !(1..1 << 20).contains(s)) {
        bail!("{name} {size} is out of range (1 to 2^20)");
    }
    if !c.hidden.is_multiple_of(c.heads) {
        bail!(
            "hidden size {} is not divisible by {} heads",
            c.hidden,
            c.heads
        );
    }
    if !c.image_size.is_multiple_of(c.patch_size) || c.image_size / c.patch_size > 1024 {
        bail!(
            "image size {} is not a multiple of patch size {}, or more than 1024 of them",
            c.image_size,
            c.patch_size
        );
    }
    Ok(())
}

/// The patch/pos/cls/head parts and blocks, checked for consistency.
pub(crate) fn assemble(mut vit: Vit) -> Result<Vit> {
    let c = &vit.config;
    if vit.blocks.len() != c.layers {
        bail!("expected {} blocks, found {}", c.layers, vit.blocks.len());
    }
    if let Some(names) = &vit.class_names {
        if names.len() != c.classes {
            vit.class_names = None;
        }
    }
    Ok(vit)
}

/// Tensor-name fragments of families this tool does not model yet, and the
/// family each suggests.
const OTHER_FAMILIES: [(&str, &str); 2] = [
    ("pre_logits", "a pre-logits head"),
    ("attn_pool", "an attention-pooling head (SigLIP)"),
];

/// Refuses, before anything is built, a file with tensors of a family not modelled.
pub(crate) fn refuse_other_families(tensors: &Tensors) -> Result<()> {
    for (fragment, family) in OTHER_FAMILIES {
        let names: Vec<&str> = tensors
            .names()
            .into_iter()
            .filter(|n| n.contains(fragment))
            .collect();
        if !names.is_empty() {
            bail!(
                "{}: tensors {} belong to {family}, which this tool does not model yet",
                tensors.file().display(),
                shortened(&names)
            );
        }
    }
    Ok(())
}

/// Every tensor of the file must have been used: one left over means a part of
/// the architecture the loader does not model, and running without it would be
/// silently wrong.
pub(crate) fn check_consumed(tensors: &Tensors) -> Result<()> {
    refuse_other_families(tensors)?;
    let left = tensors.names();
    if !left.is_empty() {
        bail!(
            "{}: tensors {} are not part of any model this tool knows; refusing to run without them",
            tensors.file().display(),
            shortened(&left)
        );
    }
    Ok(())
}

/// Up to 6 names, then how many more.
fn shortened(names: &[&str]) -> String {
    let shown = names.iter().take(6).copied().collect::<Vec<_>>().join(", ");
    match names.len() {
        n if n > 6 => format!("{shown} (and {} more)", n - 6),
        _ => shown,
    }
}

/// The tensors under a name prefix, as candle's `vb.pp("...")`: parts are taken
/// by their names relative to it.
pub(crate) struct Scope<'t> {
    tensors: &'t mut Tensors,
    prefix: String,
}

impl Tensors {
    /// A view of the tensors under `prefix` (`""`: all of them).
    pub(crate) fn pp(&mut self, prefix: &str) -> Scope<'_> {
        Scope {
            tensors: self,
            prefix: prefix.to_string(),
        }
    }

    /// Whether some tensor's name starts with `prefix.`.
    pub(crate) fn has_prefix(&self, prefix: &str) -> bool {
        let dotted = format!("{prefix}.");
        self.map.keys().any(|n| n.starts_with(&dotted))
    }

    /// Names not yet taken, sorted.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.map.keys().map(String::as_str).collect();
        names.sort();
        names
    }
}

impl Scope<'_> {
    fn name(&self, s: &str) -> String {
        join(&self.prefix, s)
    }

    /// The tensors under `prefix` below this scope's.
    pub(crate) fn pp(&mut self, prefix: &str) -> Scope<'_> {
        let prefix = self.name(prefix);
        Scope {
            tensors: self.tensors,
            prefix,
        }
    }

    pub(crate) fn file(&self) -> &Path {
        self.tensors.file()
    }

    /// The shape of `s`, which must have `N` dimensions.
    pub(crate) fn shape_n<const N: usize>(&self, s: &str) -> Result<[usize; N]> {
        let name = self.name(s);
        let shape = self.tensors.shape(&name)?;
        shape.try_into().map_err(|_| {
            anyhow::anyhow!(
                "{}: tensor {name} has shape {shape:?}, expected {N} dimensions",
                self.file().display()
            )
        })
    }

    /// Dimension `axis` of `s`.
    pub(crate) fn dim(&self, s: &str, axis: usize) -> Result<usize> {
        self.tensors.dim(&self.name(s), axis)
    }

    /// How many of `name_of(0)`, `name_of(1)`, ... the scope holds in a row.
    pub(crate) fn count(&self, name_of: impl Fn(usize) -> String) -> usize {
        block_count(self.tensors, |i| self.name(&name_of(i)))
    }

    /// A `[rows, cols]` parameter used as `x @ P` (open_clip's `proj`), as a linear
    /// layer `[cols, rows]` without bias.
    pub(crate) fn matmul_param(&mut self, s: &str) -> Result<Linear> {
        let [rows, cols] = self.shape_n(s)?;
        let p = self.take(s, &[rows, cols])?;
        let w = (0..cols * rows)
            .map(|i| p[(i % rows) * cols + i / rows])
            .collect();
        Ok(Linear {
            w,
            b: vec![0.0; cols],
        })
    }

    /// `{s}.weight` of `shape` (`[out, ...]`: a linear or conv weight) without a bias.
    pub(crate) fn weight_only(&mut self, s: &str, shape: &[usize]) -> Result<Linear> {
        Ok(Linear {
            w: self.take(&format!("{s}.weight"), shape)?,
            b: vec![0.0; shape[0]],
        })
    }

    pub(crate) fn take(&mut self, s: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let name = self.name(s);
        self.tensors.take(&name, shape)
    }

    pub(crate) fn contains(&self, s: &str) -> bool {
        self.tensors.contains(&self.name(s))
    }

    /// `{s}.weight` `[out, inp]` and `{s}.bias` `[out]`.
    pub(crate) fn linear(&mut self, s: &str, out: usize, inp: usize) -> Result<Linear> {
        let s = self.name(s);
        self.tensors
            .take_linear(&format!("{s}.weight"), &format!("{s}.bias"), out, inp)
    }

    /// `{s}.weight` and `{s}.bias`, both `[dim]`.
    pub(crate) fn norm(&mut self, s: &str, dim: usize, eps: f32) -> Result<LayerNorm> {
        let s = self.name(s);
        self.tensors
            .take_norm(&format!("{s}.weight"), &format!("{s}.bias"), dim, eps)
    }
}

pub(crate) fn block_count(tensors: &Tensors, name_of: impl Fn(usize) -> String) -> usize {
    (0..).take_while(|&i| tensors.contains(&name_of(i))).count()
}

/// `prefix.s`, or `s` under the root.
pub(crate) fn join(prefix: &str, s: &str) -> String {
    match prefix {
        "" => s.to_string(),
        p => format!("{p}.{s}"),
    }
}

/// How a layout stores a block's Q, K and V projections.
pub(crate) enum Qkv {
    /// Three linear layers (Hugging Face).
    Split {
        q: &'static str,
        k: &'static str,
        v: &'static str,
    },
    /// One `[3d, d]` weight and `[3d]` bias, Q | K | V (timm's `qkv`, PyTorch's
    /// `MultiheadAttention.in_proj_*`).
    Fused {
        weight: &'static str,
        bias: &'static str,
    },
}

/// What a layout calls a pre-norm block's parts, relative to the block:
/// `x += out(attn(ln1(x))); x += fc2(act(fc1(ln2(x))))`.
pub(crate) struct BlockNames {
    pub qkv: Qkv,
    pub out: &'static str,
    pub ln1: &'static str,
    pub ln2: &'static str,
    pub fc1: &'static str,
    pub fc2: &'static str,
    /// The two layer scales (DINOv2), folded into `out` and `fc2` at load.
    pub scales: Option<(&'static str, &'static str)>,
}

impl BlockNames {
    /// The name of the first norm's weight, which every block has.
    pub(crate) fn ln1_weight(&self) -> String {
        format!("{}.weight", self.ln1)
    }

    /// One block of width `d` with `f` neurons. A SwiGLU's gate and up projections
    /// stored apart (timm's `{fc1}_g` and `{fc1}_x`) are fused, gate first.
    pub(crate) fn block(
        &self,
        b: &mut Scope,
        d: usize,
        f: usize,
        eps: f32,
        activation: FfnActivation,
    ) -> Result<Block> {
        let qkv = match self.qkv {
            Qkv::Split { q, k, v } => {
                fuse_qkv(b.linear(q, d, d)?, b.linear(k, d, d)?, b.linear(v, d, d)?)
            }
            Qkv::Fused { weight, bias } => Linear {
                w: b.take(weight, &[3 * d, d])?,
                b: b.take(bias, &[3 * d])?,
            },
        };
        let mut proj = b.linear(self.out, d, d)?;
        let mut fc2 = b.linear(self.fc2, d, f)?;
        if let Some((ls1, ls2)) = self.scales {
            fold_scale(&mut proj, &b.take(ls1, &[d])?);
            fold_scale(&mut fc2, &b.take(ls2, &[d])?);
        }
        let (gate, up) = (format!("{}_g", self.fc1), format!("{}_x", self.fc1));
        let fc1 = match activation {
            FfnActivation::SwiGlu if b.contains(&format!("{gate}.weight")) => {
                let (gate, up) = (b.linear(&gate, f, d)?, b.linear(&up, f, d)?);
                Linear {
                    w: [gate.w, up.w].concat(),
                    b: [gate.b, up.b].concat(),
                }
            }
            _ => b.linear(self.fc1, activation.fc1_width(f), d)?,
        };
        Ok(Block {
            ln1: b.norm(self.ln1, d, eps)?,
            qkv,
            proj,
            ln2: b.norm(self.ln2, d, eps)?,
            fc1,
            fc2,
        })
    }
}
