//! Paths and scores against the paper's own code run on the CIFAR-10 ViT
//! (`../shared/reference/`, m = 20, target = label, ImageNet normalisation).
//! Required: JAS path identical on >= 49/50 images, activation and influence paths
//! on 50/50, scores within 1e-3 relative where the path is the same. On both
//! executors; a software GPU runs the first 2 (JAS) or 5 (influence) images, and no
//! path may differ there.

mod common;
use common::executors::{Executor, BOTH};
use neuronpath::attribution::{Attributor, ImageContext, Integration, Method, ScoreForm};
use neuronpath::model::{self, LoadOptions, Vit};
use serde_json::Value;

fn cifar_vit(on: Executor) -> Vit {
    neuronpath::model::reuse_freed_buffers();
    on.place(
        model::load(
            &common::shared("fixtures/vit-cifar10"),
            &LoadOptions::default(),
        )
        .unwrap(),
    )
}

fn reference_attributor(vit: &Vit) -> Attributor<'_> {
    Attributor {
        vit,
        rule: Integration::LeftRiemann(20),
        form: ScoreForm::Reference,
    }
}

#[test]
fn jas_and_activation_paths_match_the_reference_code() {
    for on in BOTH {
        jas_and_activation_paths_on(on);
    }
}

fn jas_and_activation_paths_on(on: Executor) {
    let vit = cifar_vit(on);
    let attributor = reference_attributor(&vit);
    let mut records = common::reference_records("vit-cifar10-dev.json");
    records.truncate(on.images(records.len(), 2));
    let n = records.len();
    let (mut jas_same, mut act_same) = (0, 0);
    for chunk in records.chunks(10) {
        let contexts: Vec<ImageContext> = common::contexts(&vit, chunk);
        let refs: Vec<&ImageContext> = contexts.iter().collect();
        let found =
            attributor.find_and_score(&refs, &[Method::Jas, Method::Activation], 0, |_, _| true);
        for got in &found {
            let r: &Value = &chunk[got.image];
            let (want_path, want_score, same) = match got.method {
                Method::Jas => (&r["ja"], &r["ja_score"][0], &mut jas_same),
                _ => (&r["base"], &r["base_score"][0], &mut act_same),
            };
            let (want_path, want_score) =
                (common::indices(want_path), want_score.as_f64().unwrap());
            let image = r["image"].as_str().unwrap();
            if got.path == want_path {
                *same += 1;
                let rel = (got.score.score - want_score).abs() / want_score.abs().max(1e-12);
                assert!(
                    rel < 1e-3,
                    "{image} {:?}: score {} vs reference {want_score} (relative {rel:.2e})",
                    got.method,
                    got.score.score
                );
            } else {
                eprintln!(
                    "{image} {:?}: path {:?} vs reference {want_path:?}",
                    got.method, got.path
                );
            }
        }
    }
    eprintln!("{on:?}: JAS paths identical: {jas_same}/{n}, activation paths: {act_same}/{n}");
    assert!(
        jas_same >= n - n / 50,
        "{on:?}: JAS paths identical on only {jas_same}/{n} images"
    );
    assert_eq!(
        act_same, n,
        "{on:?}: activation paths identical on only {act_same}/{n} images"
    );
}

#[test]
fn influence_paths_match_the_reference_code() {
    for on in BOTH {
        influence_paths_on(on);
    }
}

fn influence_paths_on(on: Executor) {
    let vit = cifar_vit(on);
    let attributor = reference_attributor(&vit);
    let mut records = common::reference_records("vit-cifar10-influence-dev.json");
    records.truncate(on.images(records.len(), 5));
    let n = records.len();
    let mut same = 0;
    for chunk in records.chunks(10) {
        let contexts: Vec<ImageContext> = common::contexts(&vit, chunk);
        let refs: Vec<&ImageContext> = contexts.iter().collect();
        for (r, got) in chunk.iter().zip(attributor.influence_paths(&refs)) {
            let want = common::indices(&r["influence"]);
            if got == want {
                same += 1;
            } else {
                eprintln!("{}: influence {got:?} vs reference {want:?}", r["image"]);
            }
        }
    }
    eprintln!("{on:?}: influence paths identical: {same}/{n}");
    assert_eq!(
        same, n,
        "{on:?}: influence paths identical on only {same}/{n} images"
    );
}
