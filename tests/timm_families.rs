//! The families in timm's names: the Hugging Face fixtures renamed here as timm
//! writes them (`dist_token`, `head_dist`, `reg_token`, `ls1.gamma`, a packed SwiGLU
//! `fc1`) load to the same model: DeiT's logits within 1e-5 of the Hugging Face
//! load (which `families.rs` checks against PyTorch), DINOv2's neurons at the CLS
//! token within 1e-5 at every layer (timm has no concatenated-mean head, so the
//! file gets a CLS head and only the blocks are compared).

mod common;
use neuronpath::model::{self, LoadOptions, Vit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn read(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (n, (v.shape().to_vec(), values))
        })
        .collect()
}

fn write(path: &Path, tensors: &Tensors) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (s, v))| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes.iter().map(|(n, s, b)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap();
        (n.clone(), view)
    });
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// The Hugging Face fixture `name` under timm's names (`root` is its module prefix).
fn as_timm(name: &str, root: &str, dir: &Path) -> PathBuf {
    let hf = read(&common::shared(&format!(
        "fixtures/families/{name}/model.safetensors"
    )));
    let mut timm = Tensors::new();
    for (n, t) in &hf {
        let n = n.strip_prefix(&format!("{root}.")).unwrap_or(n);
        let renamed = [
            ("embeddings.cls_token", "cls_token"),
            ("embeddings.distillation_token", "dist_token"),
            ("embeddings.register_tokens", "reg_token"),
            ("embeddings.position_embeddings", "pos_embed"),
            ("embeddings.patch_embeddings.projection", "patch_embed.proj"),
            ("encoder.layer.", "blocks."),
            ("attention.output.dense", "attn.proj"),
            ("layernorm_before", "norm1"),
            ("layernorm_after", "norm2"),
            ("intermediate.dense", "mlp.fc1"),
            ("output.dense", "mlp.fc2"),
            ("layer_scale1.lambda1", "ls1.gamma"),
            ("layer_scale2.lambda1", "ls2.gamma"),
            ("mlp.weights_in", "mlp.fc1"),
            ("mlp.weights_out", "mlp.fc2"),
            ("layernorm.", "norm."),
            ("cls_classifier", "head"),
            ("distillation_classifier", "head_dist"),
        ]
        .iter()
        .fold(n.to_string(), |n, (from, to)| n.replace(from, to));
        if renamed.ends_with("mask_token") {
            continue;
        }
        if renamed == "classifier.weight" {
            // DINOv2's head reads [CLS, patch mean]: keep the CLS half as a timm head.
            let (c, w) = (t.0[0], t.0[1] / 2);
            let half =
                t.1.chunks_exact(2 * w)
                    .flat_map(|r| r[..w].to_vec())
                    .collect();
            timm.insert("head.weight".into(), (vec![c, w], half));
            continue;
        }
        timm.insert(renamed.replace("classifier.", "head."), t.clone());
    }
    fuse_qkv(&mut timm);
    let path = dir.join(format!("{name}.safetensors"));
    write(&path, &timm);
    path
}

/// `blocks.N.attention.attention.{query,key,value}` into `blocks.N.attn.qkv`.
fn fuse_qkv(t: &mut Tensors) {
    let blocks: Vec<String> = t
        .keys()
        .filter_map(|k| {
            k.strip_suffix(".attention.attention.query.weight")
                .map(String::from)
        })
        .collect();
    for b in blocks {
        for kind in ["weight", "bias"] {
            let parts: Vec<(Vec<usize>, Vec<f32>)> = ["query", "key", "value"]
                .iter()
                .map(|p| {
                    t.remove(&format!("{b}.attention.attention.{p}.{kind}"))
                        .unwrap()
                })
                .collect();
            let mut shape = parts[0].0.clone();
            shape[0] *= 3;
            let values = parts.into_iter().flat_map(|p| p.1).collect();
            t.insert(format!("{b}.attn.qkv.{kind}"), (shape, values));
        }
    }
}

fn load(path: &Path) -> Vit {
    let options = LoadOptions {
        heads: Some(4),
        ..LoadOptions::default()
    };
    model::load(path, &options).unwrap_or_else(|e| panic!("{e:#}"))
}

fn pixels() -> Vec<Vec<f32>> {
    let reference = common::npz("fixtures/families/deit-distilled/reference.npz");
    let p = reference["pixel_values"].to_f32().unwrap();
    p.chunks_exact(p.len() / 3).map(<[f32]>::to_vec).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

#[test]
fn timm_names_load_the_same_models() {
    let dir = common::scratch("timm-families");
    let hf_dir = |n: &str| common::shared(&format!("fixtures/families/{n}"));
    let deit_hf = model::load(&hf_dir("deit-distilled"), &LoadOptions::default()).unwrap();
    let deit = load(&as_timm("deit-distilled", "deit", &dir));
    assert_eq!(deit.config.family.name, "DeiT (distilled)");
    for p in pixels() {
        let (a, b) = (deit.clean_forward(&p), deit_hf.clean_forward(&p));
        assert_close("deit logits", &a.logits, &b.logits);
    }
    for name in ["dinov2-registers", "dinov2-registers-swiglu"] {
        let hf = model::load(&hf_dir(name), &LoadOptions::default()).unwrap();
        let timm = load(&as_timm(name, "dinov2_with_registers", &dir));
        let family = timm.config.family;
        assert_eq!(
            (family.registers, family.layer_scale, family.activation),
            (
                hf.config.family.registers,
                true,
                hf.config.family.activation
            ),
            "{name}"
        );
        for p in pixels() {
            let (a, b) = (timm.clean_forward(&p), hf.clean_forward(&p));
            for l in 0..hf.config.layers {
                assert_close(&format!("{name} layer {l}"), &a.neurons[l], &b.neurons[l]);
            }
        }
    }
}
