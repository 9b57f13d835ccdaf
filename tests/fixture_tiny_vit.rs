//! The engine against PyTorch/transformers on the tiny random ViT, in all three
//! layouts, on both executors.
//! Tolerances: logits 1e-4 absolute, CLS FFN activations 1e-5 absolute, gradients
//! 1e-3 relative to the largest gradient of that image and layer.

mod common;
use common::executors::BOTH;
use neuronpath::model::{self, Action, Intervention, LoadOptions, Site, Vit};

/// The three layouts, each on both executors.
fn layouts() -> Vec<(String, Vit)> {
    BOTH.into_iter()
        .flat_map(|on| {
            loaded()
                .into_iter()
                .map(move |(name, vit)| (format!("{name} on {on:?}"), on.place(vit)))
        })
        .collect()
}

fn loaded() -> Vec<(&'static str, Vit)> {
    let heads = LoadOptions {
        heads: Some(4),
        ..LoadOptions::default()
    };
    vec![
        (
            "hf",
            model::load(
                &common::shared("fixtures/tiny-vit-hf"),
                &LoadOptions::default(),
            )
            .unwrap(),
        ),
        (
            "timm",
            model::load(
                &common::shared("fixtures/tiny-vit-timm.safetensors"),
                &heads,
            )
            .unwrap(),
        ),
        (
            "google",
            model::load(
                &common::shared("fixtures/tiny-vit-google.npz"),
                &LoadOptions::default(),
            )
            .unwrap(),
        ),
    ]
}

#[test]
fn logits_activations_and_gradients_match_pytorch() {
    let reference = common::npz("fixtures/tiny-vit-reference.npz");
    let pixels = reference["pixels"].to_f32().unwrap();
    let want_logits = reference["logits"].to_f32().unwrap();
    let want_acts = reference["cls_ffn_activations"].to_f32().unwrap();
    let want_grads = reference["cls_ffn_grad_prob"].to_f32().unwrap();
    let target = reference["target"].to_f32().unwrap()[0] as usize;
    let images = reference["pixels"].shape[0];
    for (name, vit) in layouts() {
        let c = &vit.config;
        assert_eq!(
            (c.layers, c.hidden, c.heads, c.intermediate, c.classes),
            (3, 32, 4, 64, 5),
            "{name} config"
        );
        let per_image = pixels.len() / images;
        let logits = vit.logits(&pixels, &[]);
        for (i, (got, want)) in logits.iter().zip(&want_logits).enumerate() {
            assert!(
                (got - want).abs() < 1e-4,
                "{name}: logit {i}: {got} vs {want}"
            );
        }
        let f = c.intermediate;
        let cleans: Vec<_> = pixels
            .chunks_exact(per_image)
            .map(|p| vit.clean_forward(p))
            .collect();
        for l in 0..c.layers {
            for (img, clean) in cleans.iter().enumerate() {
                let got = &clean.neurons[l];
                let want = &want_acts[(img * c.layers + l) * f..][..f];
                let worst = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "{name}: activation image {img} layer {l}: off by {worst}"
                );
            }
        }
        let sites: Vec<Site> = (0..c.layers).map(|l| vit.neuron_site(l)).collect();
        let grads = vit.gradients(&pixels, 0, &[], &vec![target; images], &sites);
        for (l, &site) in sites.iter().enumerate() {
            for img in 0..images {
                let got = &grads.at(site)[img * f..(img + 1) * f];
                let want = &want_grads[(img * c.layers + l) * f..][..f];
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-3 * scale,
                    "{name}: gradient image {img} layer {l}: off by {worst} (scale {scale})"
                );
            }
        }
    }
}

#[test]
fn branching_equals_a_full_forward_with_the_row_replaced() {
    for on in BOTH {
        let vit = on.place(
            model::load(
                &common::shared("fixtures/tiny-vit-hf"),
                &LoadOptions::default(),
            )
            .unwrap(),
        );
        branching_on(&vit);
    }
}

fn branching_on(vit: &Vit) {
    let reference = common::npz("fixtures/tiny-vit-reference.npz");
    let pixels = reference["pixels"].to_f32().unwrap();
    let pixels = &pixels[..pixels.len() / 4];
    let clean = vit.clean_forward(pixels);
    let f = vit.config.intermediate;
    let rows: Vec<f32> = clean.neurons[1].iter().map(|v| v * 0.3).collect();
    let site = vit.neuron_site(1);
    let replace = [Intervention {
        site,
        action: Action::Replace(&rows),
    }];
    let full = vit.gradients(pixels, 0, &replace, &[2], &[site]);
    let branched = vit.branched_gradients(&[&clean], &replace, &[2]);
    assert!((full.probability[0] - branched.probability[0]).abs() < 1e-6);
    let g1 = branched.at(site);
    assert_eq!(g1.len(), f);
    for (a, b) in full.at(site).iter().zip(g1) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}
