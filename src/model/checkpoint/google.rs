//! Google's original ViT release `.npz` (JAX/Flax names, `[in, out]` kernels,
//! HWIO patch kernel): the layout the paper's code loads. No config is stored:
//! the head count comes from the `query/kernel` shape `[hidden, heads, head_dim]`.

use super::{assemble, block_count, check_consumed, config_from_shapes, Loaded, Tensors};
use crate::model::vit::{Block, LayerNorm, Layout, Linear, Normalization, Vit, Weights};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = x[r * cols + c];
        }
    }
    out
}

pub fn load(path: &Path) -> Result<Vit> {
    let mut tensors = Tensors::from_npz(path)?;
    let block = |i: usize, s: &str| format!("Transformer/encoderblock_{i}/{s}");
    let layers = block_count(&tensors, "Transformer/encoderblock_", "/");
    if layers == 0 {
        bail!(
            "{}: unknown checkpoint layout: no Transformer/encoderblock_0 tensors",
            path.display()
        );
    }
    let kernel_shape = tensors.shape("embedding/kernel")?.to_vec();
    let [p, _, channels, d] = kernel_shape[..] else {
        bail!("{}: embedding/kernel must be 4-D (HWIO)", path.display())
    };
    let qshape = tensors
        .shape(&block(0, "MultiHeadDotProductAttention_1/query/kernel"))?
        .to_vec();
    let [_, heads, dh] = qshape[..] else {
        bail!(
            "{}: query/kernel must be [hidden, heads, head_dim]",
            path.display()
        )
    };
    let f = tensors.dim(&block(0, "MlpBlock_3/Dense_0/kernel"), 1)?;
    let classes = tensors.dim("head/kernel", 1)?;
    let tokens = tensors.dim("Transformer/posembed_input/pos_embedding", 1)?;
    if heads * dh != d {
        bail!(
            "{}: inconsistent shapes (heads {heads} x {dh} vs hidden {d})",
            path.display()
        );
    }
    let config = config_from_shapes(
        [d, channels, p, p],
        tokens.saturating_sub(1),
        layers,
        heads,
        f,
        classes,
    )
    .with_context(|| path.display().to_string())?;
    let eps = config.layer_norm_eps;
    // HWIO [p, p, c, d] -> [d, c, p, p]
    let hwio = tensors.take("embedding/kernel", &[p, p, channels, d])?;
    let mut w = vec![0f32; hwio.len()];
    for y in 0..p {
        for x in 0..p {
            for ch in 0..channels {
                for o in 0..d {
                    w[((o * channels + ch) * p + y) * p + x] =
                        hwio[((y * p + x) * channels + ch) * d + o];
                }
            }
        }
    }
    let patch_embed = Linear {
        w,
        b: tensors.take("embedding/bias", &[d])?,
    };
    let dense = |t: &mut Tensors,
                 name: &str,
                 inp: usize,
                 out: usize,
                 kshape: &[usize],
                 bshape: &[usize]|
     -> Result<Linear> {
        let k = t.take(&format!("{name}/kernel"), kshape)?;
        Ok(Linear {
            w: transpose(&k, inp, out),
            b: t.take(&format!("{name}/bias"), bshape)?,
        })
    };
    let norm = |t: &mut Tensors, name: &str| -> Result<LayerNorm> {
        t.take_norm(&format!("{name}/scale"), &format!("{name}/bias"), d, eps)
    };
    let mut blocks = Vec::with_capacity(layers);
    for i in 0..layers {
        let attn = |s: &str| block(i, &format!("MultiHeadDotProductAttention_1/{s}"));
        let q = dense(
            &mut tensors,
            &attn("query"),
            d,
            d,
            &[d, heads, dh],
            &[heads, dh],
        )?;
        let k = dense(
            &mut tensors,
            &attn("key"),
            d,
            d,
            &[d, heads, dh],
            &[heads, dh],
        )?;
        let v = dense(
            &mut tensors,
            &attn("value"),
            d,
            d,
            &[d, heads, dh],
            &[heads, dh],
        )?;
        blocks.push(Block {
            ln1: norm(&mut tensors, &block(i, "LayerNorm_0"))?,
            qkv: super::fuse_qkv(q, k, v),
            proj: dense(&mut tensors, &attn("out"), d, d, &[heads, dh, d], &[d])?,
            ln2: norm(&mut tensors, &block(i, "LayerNorm_2"))?,
            fc1: dense(
                &mut tensors,
                &block(i, "MlpBlock_3/Dense_0"),
                d,
                f,
                &[d, f],
                &[f],
            )?,
            fc2: dense(
                &mut tensors,
                &block(i, "MlpBlock_3/Dense_1"),
                f,
                d,
                &[f, d],
                &[d],
            )?,
        });
    }
    let cls_token = tensors.take("cls", &[1, 1, d])?;
    let pos_embed = tensors.take("Transformer/posembed_input/pos_embedding", &[1, tokens, d])?;
    let final_norm = norm(&mut tensors, "Transformer/encoder_norm")?;
    let head = dense(&mut tensors, "head", d, classes, &[d, classes], &[classes])?;
    check_consumed(&tensors)?;
    assemble(Loaded {
        config,
        weights: Weights {
            patch_embed,
            prefix: cls_token,
            pos_embed,
            norm_pre: None,
            blocks,
            norm: final_norm,
            pool: None,
            head: Some(head),
            zero_shot: None,
        },
        layout: Layout::GoogleNpz,
        class_names: None,
        normalization: Normalization::imagenet("ImageNet (as the paper's code)"),
    })
}
