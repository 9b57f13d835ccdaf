//! The Vision Transformer: configuration, weights and the clean forward pass.
//!
//! Pre-norm ViT (Dosovitskiy et al. 2021) as Hugging Face, timm and the original
//! Google release implement it: patch embedding, CLS token, learned position
//! embedding, `L` blocks of `x += Attn(LN1(x)); x += FFN(LN2(x))`, a final
//! LayerNorm and a linear head on the CLS token.

use super::forward::{Keep, RowAction};
use super::kernels;

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
}

impl VitConfig {
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
    /// Sequence length: the patches plus the CLS token.
    pub fn tokens(&self) -> usize {
        self.patches() + 1
    }
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
    pub fn parameter_count(&self) -> usize {
        let (d, f, l) = (self.hidden, self.intermediate, self.layers);
        let patch = self.channels * self.patch_size * self.patch_size * d + d;
        let block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d);
        patch + d + self.tokens() * d + l * block + 2 * d + d * self.classes + self.classes
    }
}

/// A torch-layout linear layer: `y = x W^T + b`, `w` is `[out, in]` row-major.
#[derive(Clone, Debug)]
pub struct Linear {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

#[derive(Clone, Debug)]
pub struct Block {
    pub ln1: LayerNorm,
    /// Q, K and V fused: `[3 * hidden, hidden]`, rows in that order, heads contiguous.
    pub qkv: Linear,
    pub proj: Linear,
    pub ln2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
}

/// Where the weights came from, for `inspect` and the output records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    HuggingFace,
    Timm,
    GoogleNpz,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Layout::HuggingFace => "Hugging Face (config.json + model.safetensors)",
            Layout::Timm => "timm safetensors",
            Layout::GoogleNpz => "Google ViT .npz",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Vit {
    pub config: VitConfig,
    /// Conv weight flattened to `[hidden, channels * patch * patch]` in (c, y, x) order.
    pub patch_embed: Linear,
    pub cls_token: Vec<f32>,
    /// `[tokens, hidden]`
    pub pos_embed: Vec<f32>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    pub head: Linear,
    pub layout: Layout,
    pub class_names: Option<Vec<String>>,
    /// The checkpoint's own input normalisation.
    pub normalization: Normalization,
}

/// Per-channel `(x - mean) / std` applied to pixels in `[0, 1]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Where these numbers came from, for the user.
    pub source: String,
}

impl Normalization {
    /// ImageNet's mean and std (the paper's code uses them for every model).
    pub fn imagenet(source: &str) -> Normalization {
        Normalization {
            mean: super::checkpoint::IMAGENET_MEAN,
            std: super::checkpoint::IMAGENET_STD,
            source: source.into(),
        }
    }
}

/// The clean forward pass of one image, kept for branching interventions from it.
pub struct CleanTrace {
    /// Residual stream entering each block, `[layers + 1][tokens * hidden]` (last =
    /// output; after the last block only its CLS row is computed).
    pub residual: Vec<Vec<f32>>,
    /// Residual stream after each block's attention, `[layers][tokens * hidden]`.
    pub mid: Vec<Vec<f32>>,
    /// Post-GELU FFN activation at the CLS token, `[layers][intermediate]`.
    pub cls_ffn: Vec<Vec<f32>>,
    pub logits: Vec<f32>,
}

impl Vit {
    /// The checkpoint's name for class `c`, when it has one.
    pub fn class_name(&self, c: usize) -> Option<String> {
        self.class_names.as_ref().and_then(|n| n.get(c).cloned())
    }

    /// Tokens `[tokens, hidden]` of a normalised CHW image: patches, CLS, positions.
    pub fn embed(&self, pixels: &[f32]) -> Vec<f32> {
        let c = &self.config;
        let (p, side, d) = (c.patch_size, c.image_size, c.hidden);
        let grid = side / p;
        assert_eq!(
            pixels.len(),
            c.channels * side * side,
            "pixel buffer has the wrong size"
        );
        let patch_len = c.channels * p * p;
        let mut patches = vec![0f32; c.patches() * patch_len];
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
        let mut tokens = vec![0f32; c.tokens() * d];
        tokens[..d].copy_from_slice(&self.cls_token);
        kernels::linear(
            &mut tokens[d..],
            &patches,
            c.patches(),
            &self.patch_embed.w,
            &self.patch_embed.b,
        );
        kernels::add_assign(&mut tokens, &self.pos_embed);
        tokens
    }

    /// The unmodified forward pass of one image, keeping what interventions branch from.
    pub fn clean_forward(&self, pixels: &[f32]) -> CleanTrace {
        let keep = Keep {
            tape: false,
            residuals: true,
            branch_point: None,
        };
        let out = self.forward(
            self.embed(pixels),
            0,
            &vec![RowAction::Keep; self.config.layers],
            keep,
        );
        CleanTrace {
            residual: out.residual,
            mid: out.mid,
            cls_ffn: out.cls_ffn,
            logits: out.logits,
        }
    }

    /// The stream entering block `layer + 1` for `S` variants of a clean image that
    /// differ only in block `layer`'s CLS FFN row, given as `rows = [S, intermediate]`.
    /// Everything below is shared, so the variants are run from there on only.
    pub fn branch(&self, clean: &CleanTrace, layer: usize, rows: &[f32]) -> Vec<f32> {
        let (t, d) = (self.config.tokens(), self.config.hidden);
        let s = rows.len() / self.config.intermediate;
        let mut x = Vec::with_capacity(s * t * d);
        for _ in 0..s {
            x.extend_from_slice(&clean.residual[layer + 1]);
        }
        self.set_cls_output(&mut x, layer, &clean.mid[layer][..d], rows);
        x
    }

    /// Sets the CLS row of each sequence of `x` (`[S, tokens, hidden]`, the stream
    /// leaving block `layer`) to the block's output when its CLS FFN row is `rows`
    /// (`[S, intermediate]`) and its CLS row after attention is `mid_cls` (`[S, hidden]`,
    /// or one `[hidden]` row shared by all). Only the CLS row depends on that FFN row.
    pub fn set_cls_output(&self, x: &mut [f32], layer: usize, mid_cls: &[f32], rows: &[f32]) {
        let (t, d, f) = (
            self.config.tokens(),
            self.config.hidden,
            self.config.intermediate,
        );
        let s = rows.len() / f;
        assert_eq!(x.len(), s * t * d, "one stream per row");
        let fc2 = &self.blocks[layer].fc2;
        let mut cls = vec![0f32; s * d];
        kernels::linear(&mut cls, rows, s, &fc2.w, &fc2.b);
        for (i, (seq, delta)) in x
            .chunks_exact_mut(t * d)
            .zip(cls.chunks_exact(d))
            .enumerate()
        {
            let mid = if mid_cls.len() == d {
                mid_cls
            } else {
                &mid_cls[i * d..(i + 1) * d]
            };
            for ((v, m), dl) in seq[..d].iter_mut().zip(mid).zip(delta) {
                *v = m + dl;
            }
        }
    }

    /// Gradient w.r.t. block `layer`'s CLS FFN row from the gradient of the stream
    /// entering block `layer + 1` (`[S, tokens, hidden]`, as [`Vit::branch`] made it).
    pub fn branch_gradient(&self, layer: usize, stream_grad: &[f32]) -> Vec<f32> {
        let (t, d, f) = (
            self.config.tokens(),
            self.config.hidden,
            self.config.intermediate,
        );
        let s = stream_grad.len() / (t * d);
        let cls = super::forward::first_rows(stream_grad, s, t, 1, d);
        let mut g = vec![0f32; s * f];
        kernels::linear_backward(&mut g, &cls, s, &self.blocks[layer].fc2.w, d);
        g
    }
}
