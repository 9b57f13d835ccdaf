//! Loading a [`Vit`] from the checkpoint layouts, detected automatically. A loader
//! maps a layout's tensor names to the model's parts (through [`Scope`], a view
//! under a name prefix, and tables such as [`BlockNames`]) and must use every tensor
//! of the file: a tensor it does not know is an error naming it, and the family it
//! suggests.

mod config;
mod google;
mod huggingface;
mod interpolate;
mod open_clip;
mod probe;
mod pytorch;
mod sentencepiece;
mod text;
mod timm;
mod tokenizer;
mod zero_shot;

use super::family::{Compat, FfnActivation};
use super::site::Activation;
use super::vit::{Block, LayerNorm, Layout, Linear, Normalization, Vit, VitConfig, Weights};
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
    /// classifier, else the checkpoint's, else CLIP's 100; SigLIP has no default).
    pub logit_scale: Option<f32>,
    /// Its logit bias, added to every logit (SigLIP's; default: a `logit_bias.npy`
    /// beside the classifier, else the checkpoint's). A softmax's takes none.
    pub logit_bias: Option<f32>,
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
    check_options(options)?;
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "{}: no such checkpoint file or directory, or it cannot be read",
            path.display()
        )
    })?;
    if meta.is_dir() {
        return load_dir(path, options);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("npz") => {
            refuse_heads(
                options,
                path,
                "a Google .npz, whose query kernels give the head count",
            )?;
            if options.classifier.is_some()
                || options.classes.is_some()
                || options.head.is_some()
                || options.image_size.is_some()
                || options.activation.is_some()
            {
                bail!(
                    "{}: a Google ViT .npz has its own head and runs at its size: --classifier, --classes, --head, --image-size and --activation do not apply",
                    path.display()
                );
            }
            google::load(path)
        }
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
        bail!("--class-names is for a CLIP vision tower's zero-shot classifier and goes with --classifier (with --classes the classes are their names)");
    }
    if o.logit_scale.is_some() && o.classifier.is_none() && o.classes.is_none() {
        bail!("--logit-scale is for a CLIP vision tower's zero-shot classifier and goes with --classifier or --classes");
    }
    if o.logit_bias.is_some() && o.classifier.is_none() && o.classes.is_none() {
        bail!("--logit-bias is for a SigLIP vision tower's zero-shot classifier and goes with --classifier or --classes");
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
            let json = crate::files::read_json(&config)?;
            if json.get("model_type").is_none() && json.get("architecture").is_some() {
                let weights = dir.join("model.safetensors");
                if !weights.exists() {
                    bail!(
                        "{}: a timm folder (config.json naming an architecture) needs model.safetensors{}",
                        dir.display(),
                        other_checkpoints(dir)
                    );
                }
                return Ok(Kind::Timm(weights));
            }
            return Ok(Kind::HuggingFace);
        }
        if dir.join(open_clip::CONFIG).exists() {
            let weights = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
                .iter()
                .map(|w| dir.join(w))
                .find(|w| w.exists());
            let Some(weights) = weights else {
                bail!(
                    "{}: open_clip_config.json without open_clip_model.safetensors or open_clip_pytorch_model.bin{}",
                    dir.display(),
                    other_checkpoints(dir)
                );
            };
            return Ok(Kind::OpenClip(weights));
        }
        Ok(Kind::HuggingFace)
    }
}

/// The checkpoint files a folder holds, for the error of a folder without the
/// weights its layout needs: "; it holds X: pass that file as --model", or nothing.
pub(super) fn other_checkpoints(dir: &Path) -> String {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| {
                ["pth", "pt", "bin", "safetensors", "npz"].contains(&&*e.to_string_lossy())
            })
        })
        .map(|p| p.display().to_string())
        .collect();
    found.sort();
    match &found[..] {
        [] => String::new(),
        [one] => format!("; it holds {one}: pass that file as --model"),
        more => format!(
            "; it holds {}: pass one of them as --model",
            more.join(", ")
        ),
    }
}

/// The file holding a checkpoint folder's weights (what a fingerprint hashes).
pub fn weights_file(dir: &Path) -> PathBuf {
    match Kind::of(dir) {
        Ok(Kind::Timm(w) | Kind::OpenClip(w)) => w,
        _ => huggingface::weights_file(dir),
    }
}

/// What a user should know of a model loaded from `path` with `options` that
/// changes its answers: a head count guessed (timm, `.pth` and open_clip state dicts
/// store none).
pub fn notes(path: &Path, vit: &Vit, options: &LoadOptions) -> Result<Vec<String>> {
    use super::vit::Layout;
    let file = match path.is_dir() {
        true => weights_file(path),
        false => path.to_path_buf(),
    };
    let fix = match vit.layout {
        Layout::Timm | Layout::PyTorch if timm::heads_guessed(&file, options)? => {
            "put num_heads in a config.json beside it"
        }
        Layout::OpenClip if open_clip::heads_guessed(&file, options) => {
            "put its open_clip_config.json beside it"
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![format!(
        "{}: the file stores no head count; {} heads of 64 were assumed (width {} / 64), which changes every answer if wrong: pass --heads, or {fix}",
        file.display(),
        vit.config.heads,
        vit.config.hidden
    )])
}

/// `--heads` only for layouts that store no head count.
fn refuse_heads(options: &LoadOptions, path: &Path, what: &str) -> Result<()> {
    if let Some(heads) = options.heads {
        bail!(
            "--heads {heads}: {} is {what}; --heads is for timm and .pth files",
            path.display()
        );
    }
    Ok(())
}

/// The largest weight magnitude accepted. Trained ViTs' weights stay below 10^3;
/// a product of two weights of 10^19 already overflows float32 (attention logits
/// and LayerNorm variances are such products), and 10^8 leaves room for the sums.
pub const MAX_WEIGHT: f32 = 1e8;

/// Why a safetensors file's header does not fit its data, naming the tensor: its
/// dtype, or its offsets against its shape, the tensor before it and the data's
/// length. None when the header itself does not parse (the library says why).
fn safetensors_fault(bytes: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let data = (bytes.len() - 8 - n) as u64;
    let mut tensors: Vec<(&String, &serde_json::Value)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .collect();
    let offset =
        |t: &serde_json::Value, i: usize| t["data_offsets"].get(i).and_then(|v| v.as_u64());
    tensors.sort_by_key(|(_, t)| offset(t, 0));
    let mut end = 0u64;
    for (name, t) in tensors {
        let width: u64 = match t["dtype"].as_str() {
            Some("F64" | "I64" | "U64") => 8,
            Some("F32" | "I32" | "U32") => 4,
            Some("F16" | "BF16" | "I16" | "U16") => 2,
            Some("I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2") => 1,
            _ => {
                return Some(format!(
                    "tensor {name} has dtype {}, which safetensors does not define",
                    t["dtype"]
                ))
            }
        };
        let shape: Option<Vec<u64>> = t["shape"]
            .as_array()
            .and_then(|s| s.iter().map(|d| d.as_u64()).collect());
        let Some(shape) = shape else {
            return Some(format!(
                "tensor {name} has shape {}: not a list of sizes",
                t["shape"]
            ));
        };
        let (Some(start), Some(stop)) = (offset(t, 0), offset(t, 1)) else {
            return Some(format!(
                "tensor {name} has data_offsets {}: not two byte offsets",
                t["data_offsets"]
            ));
        };
        let size = shape.iter().try_fold(width, |n, &d| n.checked_mul(d));
        if start != end || stop < start || Some(stop - start) != size || stop > data {
            return Some(format!(
                "tensor {name} has data_offsets [{start}, {stop}], but its dtype and shape {shape:?} need {} bytes from {end} (the end of the tensor before it), within the {data} bytes of data",
                size.map_or("too many".into(), |s| s.to_string())
            ));
        }
        end = stop;
    }
    (end != data).then(|| format!("the tensors end at byte {end} of the {data} bytes of data"))
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
        let bytes = crate::files::read(path, crate::files::WHOLE)?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            let why = safetensors_fault(&bytes).unwrap_or_else(|| e.to_string());
            anyhow::anyhow!("{}: not a valid safetensors file: {why}", path.display())
        })?;
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
        if let Some(i) = values.iter().position(|v| v.abs() > MAX_WEIGHT) {
            bail!(
                "{}: tensor {name} holds {:e} at index {i}, beyond the {MAX_WEIGHT:e} no trained ViT's weights come near: the passes would overflow float32",
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
/// What a loader reads off a checkpoint; [`assemble`] makes the model of it.
pub(crate) struct Loaded {
    pub config: VitConfig,
    pub weights: Weights,
    pub layout: Layout,
    pub class_names: Option<Vec<String>>,
    pub normalization: Normalization,
}

/// The model of what a loader read, at the settings every model starts with: on
/// the CPU, principled arithmetic, FFN neurons at the family's tokens.
pub(crate) fn assemble(loaded: Loaded) -> Result<Vit> {
    let Loaded {
        config,
        weights,
        layout,
        class_names,
        normalization,
    } = loaded;
    let mut vit = Vit {
        neuron_tokens: config.family.neuron_tokens(),
        config,
        weights,
        gpu: None,
        compat: Compat::Principled,
        unit: Activation::MlpPost,
        layout,
        class_names,
        normalization,
    };
    let c = &vit.config;
    if vit.weights.blocks.len() != c.layers {
        bail!(
            "expected {} blocks, found {}",
            c.layers,
            vit.weights.blocks.len()
        );
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
    (
        "attn_pool",
        "timm's SigLIP (an attention-pooling head; SigLIP is read as Hugging Face saves it)",
    ),
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
    /// The full name of `s` in this scope.
    pub(crate) fn name(&self, s: &str) -> String {
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

    /// The number of blocks under `{layers}.{i}.` in this scope (see [`block_count`]).
    pub(crate) fn count(&self, layers: &str) -> usize {
        block_count(self.tensors, &format!("{}.", self.name(layers)), ".")
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

/// The number of blocks of a layout whose block `i` tensors are named
/// `{before}{i}{after}...`: one more than the highest index found (a block missing
/// a tensor is then named by the tensor it misses, not left out).
pub(crate) fn block_count(tensors: &Tensors, before: &str, after: &str) -> usize {
    tensors
        .map
        .keys()
        .filter_map(|name| {
            let rest = name.strip_prefix(before)?;
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let index: usize = rest[..digits].parse().ok()?;
            rest[digits..].starts_with(after).then_some(index + 1)
        })
        .max()
        .unwrap_or(0)
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
