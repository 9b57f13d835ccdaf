//! The Vision Transformer: configuration, weights and the clean forward pass.
//!
//! Pre-norm ViT (Dosovitskiy et al. 2021) as Hugging Face, timm and the original
//! Google release implement it: patch embedding, CLS token (not SigLIP's), learned
//! position embedding, `L` blocks of `x += Attn(LN1(x)); x += FFN(LN2(x))`, then
//! the family's readout ([`Readout`]) and a linear head.

use super::exec::gpu::Gpu;
use super::family::{Compat, Family};
use super::site::{Action, Activation, Intervention, Site, Tokens};
use std::ops::Range;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VitConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub channels: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    /// FFN hidden width: the number of neurons per layer.
    pub intermediate: usize,
    pub classes: usize,
    pub layer_norm_eps: f32,
    pub family: Family,
}

impl VitConfig {
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
    /// Sequence length: the prefix tokens (CLS, ...) and the patches.
    pub fn tokens(&self) -> usize {
        self.patches() + self.family.prefix_tokens()
    }
    /// The rows `tokens` occupy in a sequence.
    pub fn rows(&self, tokens: Tokens) -> Range<usize> {
        self.family.rows(tokens, self.tokens())
    }
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// A torch-layout linear layer: `y = x W^T + b`, `w` is `[out, in]` row-major.
/// Weights are host vectors, or an executor's tensors ([`Weights`]).
#[derive(Clone, Debug)]
pub struct Linear<T = Vec<f32>> {
    pub w: T,
    pub b: T,
}

#[derive(Clone, Debug)]
pub struct LayerNorm<T = Vec<f32>> {
    pub gamma: T,
    pub beta: T,
    pub eps: f32,
}

#[derive(Clone, Debug)]
pub struct Block<T = Vec<f32>> {
    pub ln1: LayerNorm<T>,
    /// Q, K and V fused: `[3 * hidden, hidden]`, rows in that order, heads contiguous.
    pub qkv: Linear<T>,
    pub proj: Linear<T>,
    pub ln2: LayerNorm<T>,
    pub fc1: Linear<T>,
    pub fc2: Linear<T>,
}

/// A zero-shot classifier (CLIP, SigLIP): `logits[c] = scale * <e / |e|, text[c]> +
/// bias` for the (projected) image embedding `e`.
#[derive(Clone, Debug)]
pub struct ZeroShot<T = Vec<f32>> {
    /// `[classes, embedding]`, one class text embedding per row (used as given).
    pub text: T,
    /// The multiplier (CLIP's `logit_scale.exp()`, 100 for the released models).
    pub scale: f32,
    /// Added to every logit (SigLIP's `logit_bias`; CLIP has none: 0).
    pub bias: f32,
}

/// An attention-pooling head (SigLIP's `vision_model.head`): the probe is the one
/// query of a multi-head attention over the normed tokens (as many heads as the
/// blocks), then `x + fc2(act(fc1(LN(x))))` on that one row.
#[derive(Clone, Debug)]
pub struct AttentionPool<T = Vec<f32>> {
    /// `[hidden]`, the learned query before its projection.
    pub probe: T,
    /// Q, K and V fused, `[3 * hidden, hidden]` (`in_proj_weight`, `in_proj_bias`):
    /// Q projects the probe, K and V the tokens.
    pub qkv: Linear<T>,
    pub proj: Linear<T>,
    pub norm: LayerNorm<T>,
    /// The head's MLP, as wide as the blocks' FFN and with their non-linearity.
    pub fc1: Linear<T>,
    pub fc2: Linear<T>,
}

/// Every weight of a model: host vectors as loaded, or the copies an executor
/// holds ([`Weights::map`] makes them).
#[derive(Clone, Debug)]
pub struct Weights<T = Vec<f32>> {
    /// Conv weight flattened to `[hidden, channels * patch * patch]` in (c, y, x) order.
    pub patch_embed: Linear<T>,
    /// The prefix tokens, `[prefix, hidden]`: CLS, then the distillation token or
    /// the registers.
    pub prefix: T,
    /// `[tokens, hidden]`, added to every token (zero rows where a family adds
    /// none, as DINOv2's registers).
    pub pos_embed: T,
    /// A LayerNorm on the embeddings before block 0 (CLIP).
    pub norm_pre: Option<LayerNorm<T>>,
    pub blocks: Vec<Block<T>>,
    /// The norm the readout applies before the head: the final LayerNorm (CLIP's
    /// `post_layernorm`), or `fc_norm` after a patch mean.
    pub norm: LayerNorm<T>,
    /// The attention-pooling head of a [`super::Readout::AttentionPool`] readout.
    pub pool: Option<AttentionPool<T>>,
    /// The head on the readout (`[classes, readout width]`), or, for a zero-shot
    /// model, the projection to the embedding space (`[embedding, hidden]`); none
    /// where the readout's features are the embedding (SigLIP's pooled output).
    pub head: Option<Linear<T>>,
    pub zero_shot: Option<ZeroShot<T>>,
}

impl<T> Linear<T> {
    fn map<U>(&self, f: &mut impl FnMut(&T) -> U) -> Linear<U> {
        Linear {
            w: f(&self.w),
            b: f(&self.b),
        }
    }
}

impl<T> LayerNorm<T> {
    fn map<U>(&self, f: &mut impl FnMut(&T) -> U) -> LayerNorm<U> {
        LayerNorm {
            gamma: f(&self.gamma),
            beta: f(&self.beta),
            eps: self.eps,
        }
    }
}

impl<T> Weights<T> {
    /// The same weights with every tensor passed through `f` (an upload).
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Weights<U> {
        let f = &mut f;
        Weights {
            patch_embed: self.patch_embed.map(f),
            prefix: f(&self.prefix),
            pos_embed: f(&self.pos_embed),
            norm_pre: self.norm_pre.as_ref().map(|n| n.map(f)),
            blocks: self
                .blocks
                .iter()
                .map(|b| Block {
                    ln1: b.ln1.map(f),
                    qkv: b.qkv.map(f),
                    proj: b.proj.map(f),
                    ln2: b.ln2.map(f),
                    fc1: b.fc1.map(f),
                    fc2: b.fc2.map(f),
                })
                .collect(),
            norm: self.norm.map(f),
            pool: self.pool.as_ref().map(|p| AttentionPool {
                probe: f(&p.probe),
                qkv: p.qkv.map(f),
                proj: p.proj.map(f),
                norm: p.norm.map(f),
                fc1: p.fc1.map(f),
                fc2: p.fc2.map(f),
            }),
            head: self.head.as_ref().map(|h| h.map(f)),
            zero_shot: self.zero_shot.as_ref().map(|z| ZeroShot {
                text: f(&z.text),
                scale: z.scale,
                bias: z.bias,
            }),
        }
    }
}

/// Where the weights came from, for `inspect` and the output records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    HuggingFace,
    Timm,
    PyTorch,
    GoogleNpz,
    OpenClip,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Layout::HuggingFace => "Hugging Face (config.json + model.safetensors)",
            Layout::Timm => "timm safetensors",
            Layout::PyTorch => "PyTorch state dict (timm names)",
            Layout::GoogleNpz => "Google ViT .npz",
            Layout::OpenClip => "open_clip state dict",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Vit {
    pub config: VitConfig,
    pub weights: Weights,
    /// The GPU the passes run on, holding a copy of the weights ([`Vit::use_gpu`]);
    /// none: the CPU.
    pub(super) gpu: Option<Arc<Gpu>>,
    /// Whose arithmetic the forward follows where they differ (MAE's `fc_norm`).
    pub compat: Compat,
    /// Where the neurons live: the family's default ([`Family::neuron_tokens`]) or
    /// another token set (the distillation token, the patches, every token).
    pub neuron_tokens: Tokens,
    /// What a path's unit is: an FFN neuron (`mlp.post`, the paper's) or an
    /// attention head (`attn.z`).
    pub unit: Activation,
    pub layout: Layout,
    pub class_names: Option<Vec<String>>,
    /// The checkpoint's own input normalisation.
    pub normalization: Normalization,
}

/// ImageNet's mean and standard deviation, which most checkpoints were trained with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How an image becomes the model's input: [`Geometry`], then per-channel
/// `(x - mean) / std` on pixels in `[0, 1]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub geometry: Geometry,
    /// Where these numbers came from, for the user.
    pub source: String,
}

impl Normalization {
    /// ImageNet's mean and std, the image resized straight to the model's size
    /// (bilinear, no crop): what the paper's code does for every model.
    pub fn imagenet(source: &str) -> Normalization {
        Normalization {
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            geometry: Geometry::default(),
            source: source.into(),
        }
    }
}

/// PIL's resampling filters that preprocessors use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filter {
    #[default]
    Bilinear,
    Bicubic,
}

/// The resize (and centre crop) that brings an image to the model's size, as a
/// checkpoint's `preprocessor_config.json` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    /// `(height, width)` to resize to; `None`: the model's size.
    pub size: Option<(usize, usize)>,
    /// Resize the shortest edge to this (aspect kept) instead.
    pub shortest_edge: Option<usize>,
    /// Centre-crop to the model's size after resizing (padded with black where
    /// the image is smaller, as Hugging Face's `center_crop`).
    pub crop: bool,
    /// No resize (`do_resize: false`): the image is taken at its own size.
    pub keep_size: bool,
    pub filter: Filter,
}

/// The clean forward pass of one image, kept for branching interventions from it.
pub struct CleanTrace {
    /// Residual stream entering each block, `[layers + 1][tokens * hidden]` (last =
    /// output; after the last block only the rows the readout needs are computed).
    pub(super) residual: Vec<Vec<f32>>,
    /// Residual stream after each block's attention, `[layers][tokens * hidden]`.
    pub(super) mid: Vec<Vec<f32>>,
    /// The neurons: each block's FFN post-activation at the model's neuron tokens
    /// ([`Vit::neuron_site`]), `[layers][rows * intermediate]`.
    pub neurons: Vec<Vec<f32>>,
    pub logits: Vec<f32>,
}

/// One scan pass over a batch of `S` images ([`Vit::activations`]).
pub struct Activations {
    /// Each block's values at the neuron site, `[layers][S * rows * width]`.
    pub neurons: Vec<Vec<f32>>,
    /// The attention-pooling head's MLP post-activation ([`Site::HEAD_MLP`]),
    /// `[S, intermediate]`, for a model with one.
    pub head: Option<Vec<f32>>,
    /// The last block's output, `[S, tokens, hidden]` (rows the readout does not
    /// read, nor the neuron site, are not computed).
    pub output: Vec<f32>,
    /// `[S, classes]`
    pub logits: Vec<f32>,
}

impl Vit {
    /// The probabilities of `[S, classes]` logits, as the family turns logits into
    /// them ([`super::family::Probability`]: a softmax, or SigLIP's sigmoid per class).
    pub fn probabilities(&self, logits: &[f32]) -> Vec<f32> {
        self.config
            .family
            .probability
            .of(logits, self.config.classes)
    }

    /// The checkpoint's name for class `c`, when it has one.
    pub fn class_name(&self, c: usize) -> Option<String> {
        self.class_names.as_ref().and_then(|n| n.get(c).cloned())
    }

    /// Where block `block`'s neurons live: the FFN post-activation at the family's
    /// neuron tokens (CLS for the ViT; the patches for MAE, as the paper's code).
    pub fn neuron_site(&self, block: usize) -> Site {
        Site {
            block,
            activation: self.unit,
            tokens: self.neuron_tokens,
        }
    }

    /// One intervention per layer at the neuron sites, `actions[l]` at layer `l`.
    pub fn at_neuron_sites<'a>(
        &self,
        actions: impl IntoIterator<Item = Action<'a>>,
    ) -> Vec<Intervention<'a>> {
        actions
            .into_iter()
            .enumerate()
            .map(|(l, action)| Intervention {
                site: self.neuron_site(l),
                action,
            })
            .collect()
    }

    /// Units per layer: FFN neurons, or heads.
    pub fn units(&self) -> usize {
        match self.unit {
            Activation::MlpPost | Activation::HeadMlpPost => self.config.intermediate,
            Activation::AttnZ => self.config.heads,
        }
    }

    /// Values per token row of the unit's site: the FFN width, or the model's.
    pub fn unit_width(&self) -> usize {
        match self.unit {
            Activation::MlpPost | Activation::HeadMlpPost => self.config.intermediate,
            Activation::AttnZ => self.config.hidden,
        }
    }

    /// The rows of `site` in its sequence: the tokens' rows of a block's site, the
    /// one row of the pooling head's.
    pub fn site_rows(&self, site: Site) -> Range<usize> {
        match site.activation {
            Activation::HeadMlpPost => 0..1,
            _ => self.config.rows(site.tokens),
        }
    }

    /// Token rows of the neuron site.
    pub fn neuron_rows(&self) -> usize {
        self.config.rows(self.neuron_tokens).len()
    }

    /// Rows of the last block that are computed: those the readout reads, and the
    /// neuron rows.
    pub(super) fn readout_rows(&self) -> usize {
        let c = &self.config;
        c.family
            .readout
            .rows(c.tokens())
            .max(c.rows(self.neuron_tokens).end)
    }

    /// The number of weights (layer scales counted in the layers they are folded into).
    pub fn parameter_count(&self) -> usize {
        let mut count = 0;
        self.weights.map(|t| count += t.len());
        count
    }

    /// The patches of `S` normalised CHW images, `[S * patches, channels * patch *
    /// patch]`, each in (c, y, x) order as the flattened conv weight.
    pub(super) fn patchify(&self, pixels: &[f32]) -> Vec<f32> {
        let c = &self.config;
        let (p, side) = (c.patch_size, c.image_size);
        let grid = side / p;
        let image = c.channels * side * side;
        assert!(
            !pixels.is_empty() && pixels.len().is_multiple_of(image),
            "pixel buffer has the wrong size"
        );
        let patch_len = c.channels * p * p;
        let mut patches = vec![0f32; pixels.len() / image * c.patches() * patch_len];
        for (pixels, patches) in pixels
            .chunks_exact(image)
            .zip(patches.chunks_exact_mut(c.patches() * patch_len))
        {
            for gy in 0..grid {
                for gx in 0..grid {
                    let dst = &mut patches[(gy * grid + gx) * patch_len..][..patch_len];
                    for ch in 0..c.channels {
                        for y in 0..p {
                            let src = ch * side * side + (gy * p + y) * side + gx * p;
                            dst[(ch * p + y) * p..][..p].copy_from_slice(&pixels[src..src + p]);
                        }
                    }
                }
            }
        }
        patches
    }
}
