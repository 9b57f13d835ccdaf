//! timm `VisionTransformer` safetensors (fused `qkv`); dimensions come from shapes.

use super::{assemble, block_count, check_consumed, config_from_shapes, Tensors};
use crate::model::vit::{Block, Layout, Normalization, Vit};
use anyhow::{bail, Context, Result};

pub fn load(mut tensors: Tensors, options: &super::LoadOptions) -> Result<Vit> {
    let layers = block_count(&tensors, |i| format!("blocks.{i}.attn.qkv.weight"));
    let patch_shape = tensors.shape("patch_embed.proj.weight")?.to_vec();
    let [d, channels, p, _] = patch_shape[..] else {
        bail!(
            "{}: patch_embed.proj.weight must be 4-D",
            tensors.file().display()
        )
    };
    let f = tensors.shape("blocks.0.mlp.fc1.weight")?[0];
    let classes = tensors.shape("head.weight")?[0];
    let tokens = tensors.shape("pos_embed")?[1];
    // timm stores no head count; 64-wide heads is the ViT convention (Ti: 3, S: 6, B: 12, L: 16).
    let heads = match options.heads {
        Some(h) => h,
        None if d % 64 == 0 => d / 64,
        None => bail!("{}: timm files store no head count and width {d} is not a multiple of 64: pass --heads", tensors.file().display()),
    };
    let config = config_from_shapes([d, channels, p, p], tokens, layers, heads, f, classes)
        .with_context(|| tensors.file().display().to_string())?;
    let eps = config.layer_norm_eps;
    let patch_embed = tensors.take_linear_reshaped("patch_embed.proj", &[d, channels, p, p])?;
    let cls_token = tensors.take("cls_token", &[1, 1, d])?;
    let pos_embed = tensors.take("pos_embed", &[1, tokens, d])?;
    let mut blocks = Vec::with_capacity(layers);
    for i in 0..layers {
        let n = |s: &str| format!("blocks.{i}.{s}");
        blocks.push(Block {
            ln1: tensors.take_norm(&n("norm1.weight"), &n("norm1.bias"), d, eps)?,
            qkv: tensors.take_linear(&n("attn.qkv.weight"), &n("attn.qkv.bias"), 3 * d, d)?,
            proj: tensors.take_linear(&n("attn.proj.weight"), &n("attn.proj.bias"), d, d)?,
            ln2: tensors.take_norm(&n("norm2.weight"), &n("norm2.bias"), d, eps)?,
            fc1: tensors.take_linear(&n("mlp.fc1.weight"), &n("mlp.fc1.bias"), f, d)?,
            fc2: tensors.take_linear(&n("mlp.fc2.weight"), &n("mlp.fc2.bias"), d, f)?,
        });
    }
    let norm = tensors.take_norm("norm.weight", "norm.bias", d, eps)?;
    let head = tensors.take_linear("head.weight", "head.bias", classes, d)?;
    check_consumed(&tensors)?;
    assemble(Vit {
        config,
        patch_embed,
        cls_token,
        pos_embed,
        blocks,
        norm,
        head,
        layout: Layout::Timm,
        class_names: None,
        normalization: Normalization::imagenet("ImageNet (timm files carry none)"),
    })
}
