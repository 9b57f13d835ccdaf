//! Every family fixture (`common::family_fixtures`), each saved by its own library,
//! against PyTorch (its `reference.npz`): DeiT (distilled), the CLIP vision tower
//! (zero-shot) and DINOv2 (registers; GELU and SwiGLU) of `../shared`, and this
//! repository's Hugging Face `CLIPModel` and open_clip (class rows from their own
//! text towers), timm's CLIP towers, DINOv2 run at another size than it was trained
//! at, backbones with linear probes, and SigLIP (no CLS token, an attention-pooling
//! head, a sigmoid per class). Tolerances: logits 1e-4 (relative to the largest for
//! zero-shot models, whose logits carry a common offset), probabilities (the
//! family's: a softmax, SigLIP's sigmoid per class) 1e-5, activations 1e-5 of each
//! image and layer's largest (at least 1e-5: the float32 reference itself is off by
//! up to 1.2e-5 absolute, 1.5e-6 of the largest, per the READMEs), gradients 1e-3 of
//! each image and layer's largest, at the CLS token (where there is one), at every
//! token, and at SigLIP's pooling-head MLP. On both executors (a software GPU on the
//! first two images of each fixture).

mod common;
use common::executors::{Executor, BOTH};
use common::{close, max_abs};
use neuronpath::model::{npy::Array, Site, Tokens};
use std::collections::HashMap;

fn values(reference: &HashMap<String, Array>, key: &str) -> Vec<f32> {
    reference[key].to_f32().unwrap()
}

#[test]
fn families_match_pytorch() {
    for on in BOTH {
        families_match_pytorch_on(on);
    }
}

fn families_match_pytorch_on(on: Executor) {
    for fixture in common::family_fixtures() {
        let name = format!("{} ({on:?})", fixture.name);
        let reference = fixture.reference();
        let all_targets = values(&reference, "target");
        let images = on.images(all_targets.len(), 2);
        let targets: Vec<usize> = all_targets[..images].iter().map(|&t| t as usize).collect();
        let all_pixels = values(&reference, "pixel_values");
        let per_image = all_pixels.len() / all_targets.len();
        let pixels = &all_pixels[..images * per_image];
        for tokens in [Tokens::Cls, Tokens::All] {
            let mut vit = fixture.load();
            if vit.config.rows(tokens).is_empty() {
                assert!(!reference.contains_key("cls_ffn_activations"), "{name}");
                continue;
            }
            vit.neuron_tokens = tokens;
            let vit = on.place(vit);
            let (t, f, layers) = (
                vit.config.tokens(),
                vit.config.intermediate,
                vit.config.layers,
            );
            let (acts_key, grads_key) = match tokens {
                Tokens::Cls => ("cls_ffn_activations", "cls_ffn_grad_prob"),
                _ => ("ffn_activations", "ffn_grad_prob"),
            };
            let (want_acts, want_grads) =
                (values(&reference, acts_key), values(&reference, grads_key));
            let rows = vit.neuron_rows();
            let mut sites: Vec<Site> = (0..layers).map(|l| vit.neuron_site(l)).collect();
            let pooled = vit.weights.pool.is_some();
            assert_eq!(
                pooled,
                reference.contains_key("head_ffn_activations"),
                "{name}"
            );
            if pooled {
                sites.push(Site::HEAD_MLP);
            }
            let grads = vit.gradients(pixels, 0, &[], &targets, &sites);
            if pooled {
                head_matches(&name, &vit, pixels, &grads, &reference);
            }
            let want_logits = values(&reference, "logits");
            let logit_tol = match vit.weights.zero_shot {
                Some(_) => 1e-4 * max_abs(&want_logits).max(1.0),
                None => 1e-4,
            };
            for (b, p) in pixels.chunks_exact(per_image).enumerate() {
                let clean = vit.clean_forward(p);
                let classes = vit.config.classes;
                let want = &want_logits[b * classes..(b + 1) * classes];
                close(
                    &format!("{name} logits {b}"),
                    &clean.logits,
                    want,
                    logit_tol,
                );
                let probs = vit.probabilities(&clean.logits);
                close(
                    &format!("{name} probs {b}"),
                    &probs,
                    &values(&reference, "probs")[b * classes..][..classes],
                    1e-5,
                );
                for (l, site) in sites.iter().take(layers).enumerate() {
                    let at = (b * layers + l) * rows * f;
                    let what = format!("{name} {site} image {b}");
                    let want = &want_acts[at..at + rows * f];
                    let tol = 1e-5 * max_abs(want).max(1.0);
                    close(&format!("{what} activation"), &clean.neurons[l], want, tol);
                    let want = &want_grads[at..at + rows * f];
                    let got = &grads.at(*site)[b * rows * f..(b + 1) * rows * f];
                    close(&format!("{what} gradient"), got, want, 1e-3 * max_abs(want));
                }
                assert_eq!(rows, if tokens == Tokens::Cls { 1 } else { t });
            }
        }
    }
}

/// The attention-pooling head's MLP (`head.mlp.post`), its activations and
/// gradients, against the reference's `head_ffn_*`.
fn head_matches(
    name: &str,
    vit: &neuronpath::model::Vit,
    pixels: &[f32],
    grads: &neuronpath::model::Gradients,
    reference: &HashMap<String, Array>,
) {
    let f = vit.config.intermediate;
    let images = pixels.len() / (3 * vit.config.image_size.pow(2));
    let got = vit.activations(pixels).head.expect("the head's values");
    let want_acts = values(reference, "head_ffn_activations");
    let want_grads = values(reference, "head_ffn_grad_prob");
    for b in 0..images {
        let at = b * f..(b + 1) * f;
        let want = &want_acts[at.clone()];
        let what = format!("{name} head.mlp.post image {b}");
        close(
            &format!("{what} activation"),
            &got[at.clone()],
            want,
            1e-5 * max_abs(want).max(1.0),
        );
        let want = &want_grads[at.clone()];
        close(
            &format!("{what} gradient"),
            &grads.at(Site::HEAD_MLP)[at],
            want,
            1e-3 * max_abs(want),
        );
    }
}

#[test]
fn inspect_names_each_family_and_its_options() {
    let expected = [
        (
            "deit-distilled",
            "DeiT (distilled)",
            "CLS, distillation, patches",
        ),
        ("clip-vision", "CLIP vision tower", "QuickGelu"),
        ("dinov2-registers", "DINOv2 with registers", "4 registers"),
        ("dinov2-registers-swiglu", "DINOv2 with registers", "SwiGlu"),
        ("clip-hf", "CLIP (vision and text towers)", "GeluErf"),
        ("open-clip safetensors", "open_clip state dict", "QuickGelu"),
        ("open-clip bin", "CLIP (open_clip)", "QuickGelu"),
        (
            "timm-clip-quickgelu",
            "CLIP image tower (timm)",
            "QuickGelu",
        ),
        ("timm-clip", "CLIP image tower (timm)", "GeluErf"),
        ("dinov2-resized", "DINOv2", "32x32x3, patch 8 -> 17 tokens"),
        (
            "dinov2-registers-resized",
            "DINOv2 with registers",
            "32x32x3, patch 8 -> 19 tokens",
        ),
        (
            "dinov2-backbone",
            "DINOv2 backbone + linear probe",
            "[CLS, mean of the patch tokens]",
        ),
        (
            "timm-dinov2-backbone",
            "backbone + linear probe",
            "CLS token -> norm -> head",
        ),
        ("siglip-vision", "SigLIP vision tower", "sigmoid per class"),
        (
            "siglip",
            "SigLIP (vision and text towers)",
            "cosine with class text embeddings x scale + bias",
        ),
        (
            "siglip classifier",
            "SigLIP (vision and text towers)",
            "attention pooling",
        ),
    ];
    let fixtures = common::family_fixtures();
    assert_eq!(fixtures.len(), expected.len());
    for (name, family, expect) in expected {
        let fixture = fixtures.iter().find(|f| f.name == name).unwrap();
        let out = common::neuronpath()
            .arg("inspect")
            .args(fixture.args())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(family) && stdout.contains(expect),
            "{name}: {stdout}"
        );
    }
}
