//! MAE (global-pool readout, `fc_norm`, neurons = FFN channels across the patch
//! tokens) against the paper's own MAE programs run on `mae-cifar10`
//! (`../shared/reference/mae-cifar10-*.json`, m = 20, target = label, ImageNet
//! normalisation), with `--compat reference`. Required: forward logits within 1e-4
//! and patch-mean activations within 1e-5; JAS paths identical on >= 49/50 images,
//! activation and influence paths on 50/50, scores within 1e-3 relative where the
//! path is the same. On both executors; a software GPU runs the first image of
//! the paths, and no path may differ there.

mod common;
use common::executors::{Executor, BOTH};
use neuronpath::attribution::{Attributor, ImageContext, Integration, Method, ScoreForm};
use neuronpath::model::{self, Compat, Family, LoadOptions, Tokens, Vit};
use serde_json::Value;

fn mae(file: &str, compat: Compat, on: Executor) -> Vit {
    neuronpath::model::reuse_freed_buffers();
    let mut vit = model::load(
        &common::shared(&format!("fixtures/mae-cifar10/{file}")),
        &LoadOptions::default(),
    )
    .unwrap();
    vit.compat = compat;
    on.place(vit)
}

/// A path as the reference emits it (the influence program writes floats).
fn path_of(value: &Value) -> Vec<usize> {
    let value = value.as_array().map_or(value, |a| match a[..] {
        [ref inner @ Value::Array(_)] => inner,
        _ => value,
    });
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as usize)
        .collect()
}

fn first_score(value: &Value) -> f64 {
    value.as_array().map_or(value, |a| &a[0]).as_f64().unwrap()
}

#[test]
fn the_checkpoint_is_read_as_mae_with_four_heads() {
    let vit = mae("mae-cifar10.pth", Compat::Reference, Executor::Cpu);
    let c = &vit.config;
    assert_eq!(c.family, Family::MAE);
    assert_eq!(
        (c.layers, c.hidden, c.heads, c.intermediate),
        (6, 128, 4, 512)
    );
    assert_eq!(vit.neuron_site(2).to_string(), "blocks.2.mlp.post@patches");
    assert_eq!(vit.neuron_rows(), c.rows(Tokens::Patches).len());
}

#[test]
fn forward_matches_the_reference_with_either_fc_norm_and_either_file() {
    for on in BOTH {
        forward_on(on);
    }
}

fn forward_on(on: Executor) {
    let forward: Value = serde_json::from_str(
        &std::fs::read_to_string(common::shared("reference/mae-cifar10-forward.json")).unwrap(),
    )
    .unwrap();
    let records = forward["logits"].as_array().unwrap();
    for (compat, key) in [
        (Compat::Reference, "logits"),
        (Compat::Principled, "logits_official_single_fc_norm"),
    ] {
        let pth = mae("mae-cifar10.pth", compat, on);
        let safetensors = mae("mae-cifar10.safetensors", compat, on);
        let contexts = common::contexts(&pth, records);
        for (r, img) in records.iter().zip(&contexts) {
            let want: Vec<f64> = r[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            for (i, (got, want)) in img.clean.logits.iter().zip(&want).enumerate() {
                assert!(
                    (*got as f64 - want).abs() < 1e-4,
                    "{on:?} {compat:?} {}: logit {i}: {got} vs {want}",
                    r["image"]
                );
            }
            let other = safetensors.clean_forward(&img.pixels);
            assert_eq!(
                other.logits, img.clean.logits,
                ".pth and .safetensors differ"
            );
        }
    }
    let acts = &forward["ffn_activation"];
    let vit = mae("mae-cifar10.pth", Compat::Reference, on);
    let img = &common::contexts(&vit, std::slice::from_ref(acts))[0];
    let f = vit.config.intermediate;
    for (l, want) in acts["mean_over_patch_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let rows = &img.clean.neurons[l];
        let tokens = rows.len() / f;
        for (n, want) in want.as_array().unwrap().iter().enumerate() {
            let got = rows.chunks_exact(f).map(|r| r[n] as f64).sum::<f64>() / tokens as f64;
            let want = want.as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-5,
                "{on:?} layer {l} neuron {n}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn paths_match_the_reference_mae_programs() {
    for on in BOTH {
        paths_on(on);
    }
}

fn paths_on(on: Executor) {
    let vit = mae("mae-cifar10.pth", Compat::Reference, on);
    let attributor = Attributor {
        vit: &vit,
        rule: Integration::LeftRiemann(20),
        form: ScoreForm::Reference,
    };
    let mut records = common::reference_records("mae-cifar10-dev.json");
    records.truncate(on.images(records.len(), 1));
    let n = records.len();
    let methods = [
        (Method::Jas, "ja", "ja_score"),
        (Method::Activation, "base", "base_score"),
        (Method::Influence, "influence", "influence_score"),
    ];
    let mut same = [0usize; 3];
    for chunk in records.chunks(10) {
        let contexts: Vec<ImageContext> = common::contexts(&vit, chunk);
        let refs: Vec<&ImageContext> = contexts.iter().collect();
        let found = attributor.find_and_score(&refs, &methods.map(|m| m.0), 0, |_, _| true);
        for got in &found {
            let r = &chunk[got.image];
            let which = methods.iter().position(|m| m.0 == got.method).unwrap();
            let (_, path_key, score_key) = methods[which];
            let want = path_of(&r[path_key]);
            let image = r["image"].as_str().unwrap();
            if got.path != want {
                eprintln!(
                    "{image} {:?}: path {:?} vs reference {want:?}",
                    got.method, got.path
                );
                continue;
            }
            same[which] += 1;
            let want_score = first_score(&r[score_key]);
            let rel = (got.score.score - want_score).abs() / want_score.abs().max(1e-12);
            assert!(
                rel < 1e-3,
                "{image} {:?}: score {} vs reference {want_score} (relative {rel:.2e})",
                got.method,
                got.score.score
            );
        }
    }
    eprintln!(
        "{on:?}: identical paths: JAS {}/{n}, activation {}/{n}, influence {}/{n}",
        same[0], same[1], same[2]
    );
    assert!(
        same[0] >= n - n / 50,
        "{on:?}: JAS paths identical on only {}/{n} images",
        same[0]
    );
    assert_eq!(
        same[1], n,
        "{on:?}: activation paths identical on only {}/{n}",
        same[1]
    );
    assert_eq!(
        same[2], n,
        "{on:?}: influence paths identical on only {}/{n}",
        same[2]
    );
}
