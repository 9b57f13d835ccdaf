//! Loading a [`Vit`] from the checkpoint layouts, detected automatically. A loader
//! maps a layout's tensor names to the model's parts (through [`Scope`], a view
//! under a name prefix) and must use every tensor of the file: a tensor it does
//! not know is an error naming it, and the family it suggests.

mod google;
mod huggingface;
mod pytorch;
mod timm;
mod zero_shot;

use super::vit::{LayerNorm, Linear, Vit, VitConfig};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use super::vit::{IMAGENET_MEAN, IMAGENET_STD};

/// What a checkpoint may not say about itself.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Attention heads, for timm files (which store no head count).
    pub heads: Option<usize>,
    /// A zero-shot classifier for a CLIP tower: a `.npy` of class text embeddings,
    /// `[classes, embedding]`, one row per class.
    pub classifier: Option<PathBuf>,
    /// Its logit scale (the multiplier; default: a `logit_scale.npy` beside the
    /// classifier, else CLIP's 100).
    pub logit_scale: Option<f32>,
    /// Its class names, one per line.
    pub class_names: Option<PathBuf>,
}

/// Loads a Hugging Face directory, a timm `.safetensors` or PyTorch `.pth`/`.pt`
/// state dict, or a Google `.npz`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Vit> {
    if path.is_dir() {
        return huggingface::load(path, options);
    }
    if !path.exists() {
        bail!("{}: no such checkpoint file or directory", path.display());
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("npz") => google::load(path),
        Some("safetensors" | "pth" | "pt") => {
            let tensors = if path.extension().is_some_and(|e| e == "safetensors") {
                Tensors::from_safetensors(path)?
            } else {
                Tensors::from_pytorch(path)?
            };
            refuse_other_families(&tensors)?;
            if tensors.contains("blocks.0.attn.qkv.weight") {
                timm::load(tensors, options)
            } else if tensors.contains("vit.embeddings.cls_token") {
                bail!("{}: Hugging Face weights need their config.json: pass the directory holding both", path.display())
            } else {
                bail!("{}: unknown checkpoint layout (neither timm `blocks.N.attn.qkv` nor Hugging Face `vit.*` tensors)", path.display())
            }
        }
        _ => bail!(
            "{}: unknown checkpoint layout: expected a directory, .safetensors, .pth/.pt or .npz",
            path.display()
        ),
    }
}

/// Named tensors of one file, taken out one by one with shape checks.
pub(crate) struct Tensors {
    file: PathBuf,
    map: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Tensors {
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
const OTHER_FAMILIES: [(&str, &str); 3] = [
    (
        "norm_pre",
        "CLIP in timm's layout (its activation is not in the file: use the Hugging Face layout)",
    ),
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

    /// Names not yet taken, sorted.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.map.keys().map(String::as_str).collect();
        names.sort();
        names
    }
}

impl Scope<'_> {
    fn name(&self, s: &str) -> String {
        match self.prefix.as_str() {
            "" => s.to_string(),
            p => format!("{p}.{s}"),
        }
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
