//! DeiT (distilled), the CLIP vision tower (zero-shot) and DINOv2 (registers; GELU
//! and SwiGLU), each saved by its own library, against PyTorch
//! (`../shared/fixtures/families/<name>/reference.npz`). Tolerances: logits 1e-4
//! (relative to the largest for CLIP, whose logits carry a large common offset),
//! probabilities 1e-5, activations 1e-5 of each image and layer's largest (at least
//! 1e-5: the float32 reference itself is off by up to 1.2e-5 absolute, 1.5e-6 of the
//! largest, per the READMEs), gradients 1e-3 of each image and layer's largest, at
//! the CLS token and at every token.

mod common;
use neuronpath::model::{self, npy::Array, LoadOptions, Site, Tokens, Vit};
use std::collections::HashMap;

const FAMILIES: [&str; 4] = [
    "deit-distilled",
    "clip-vision",
    "dinov2-registers",
    "dinov2-registers-swiglu",
];

fn load(name: &str) -> Vit {
    let dir = common::shared(&format!("fixtures/families/{name}"));
    let options = LoadOptions {
        classifier: (name == "clip-vision").then(|| dir.join("text.npy")),
        ..LoadOptions::default()
    };
    model::load(&dir, &options).unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

fn values(reference: &HashMap<String, Array>, key: &str) -> Vec<f32> {
    reference[key].to_f32().unwrap()
}

/// `|got - want| <= tol` everywhere, naming the first place it fails.
fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: {g} vs {w} (tolerance {tol:e})"
        );
    }
}

fn max_abs(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

#[test]
fn families_match_pytorch() {
    for name in FAMILIES {
        let reference = common::npz(&format!("fixtures/families/{name}/reference.npz"));
        let pixels = values(&reference, "pixel_values");
        let targets: Vec<usize> = values(&reference, "target")
            .iter()
            .map(|&t| t as usize)
            .collect();
        let images = targets.len();
        let per_image = pixels.len() / images;
        for tokens in [Tokens::Cls, Tokens::All] {
            let mut vit = load(name);
            vit.neuron_tokens = tokens;
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
            let sites: Vec<Site> = (0..layers).map(|l| vit.neuron_site(l)).collect();
            let grads = vit.gradients(&pixels, 0, &[], &targets, &sites);
            let want_logits = values(&reference, "logits");
            let logit_tol = if name == "clip-vision" {
                1e-4 * max_abs(&want_logits)
            } else {
                1e-4
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
                let probs = neuronpath::numeric::softmax(&clean.logits, classes);
                close(
                    &format!("{name} probs {b}"),
                    &probs,
                    &values(&reference, "probs")[b * classes..][..classes],
                    1e-5,
                );
                for (l, site) in sites.iter().enumerate() {
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

#[test]
fn inspect_names_each_family_and_its_options() {
    for (name, family, expect) in [
        (
            "deit-distilled",
            "DeiT (distilled)",
            "CLS, distillation, patches",
        ),
        ("clip-vision", "CLIP vision tower", "QuickGelu"),
        ("dinov2-registers", "DINOv2 with registers", "4 registers"),
        ("dinov2-registers-swiglu", "DINOv2 with registers", "SwiGlu"),
    ] {
        let dir = common::shared(&format!("fixtures/families/{name}"));
        let mut cmd = common::neuronpath();
        cmd.args(["inspect", "--model"]).arg(&dir);
        if name == "clip-vision" {
            cmd.arg("--classifier").arg(dir.join("text.npy"));
        }
        let out = cmd.output().unwrap();
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
