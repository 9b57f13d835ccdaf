//! Paths and scores against the paper's own code run on the CIFAR-10 ViT
//! (`../shared/reference/vit-cifar10-dev.json`, m = 20, target = label).
//! Required: JAS path identical on >= 49/50 images, activation path on 50/50,
//! scores within 1e-3 relative where the path is the same.

mod common;
use neuronpath::attribution::{jas, Attributor, ImageContext, Integration, ScoreForm};
use neuronpath::model::{self, LoadOptions};
use serde_json::Value;

#[test]
fn jas_and_activation_paths_match_the_reference_code() {
    neuronpath::model::kernels::reuse_freed_buffers();
    let vit = model::load(
        &common::shared("fixtures/vit-cifar10"),
        &LoadOptions::default(),
    )
    .unwrap();
    let text = std::fs::read_to_string(common::shared("reference/vit-cifar10-dev.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let records = reference["records"].as_array().unwrap();
    let attributor = Attributor {
        vit: &vit,
        rule: Integration::LeftRiemann(20),
        form: ScoreForm::Reference,
    };
    let (mut jas_same, mut act_same) = (0, 0);
    for chunk in records.chunks(10) {
        let contexts: Vec<ImageContext> = common::contexts(&vit, chunk);
        let refs: Vec<&ImageContext> = contexts.iter().collect();
        let paths = attributor.locate(&refs);
        let act_paths: Vec<Vec<usize>> = contexts
            .iter()
            .map(|c| jas::activation_path(&c.clean))
            .collect();
        let items: Vec<(&ImageContext, &[usize])> = contexts
            .iter()
            .zip(&paths)
            .chain(contexts.iter().zip(&act_paths))
            .map(|(c, p)| (c, p.as_slice()))
            .collect();
        let scores = attributor.score(&items);
        for (i, r) in chunk.iter().enumerate() {
            let want: Vec<usize> = r["ja"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let want_base: Vec<usize> = r["base"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let image = r["image"].as_str().unwrap();
            for (got_path, want_path, got, want_score, same) in [
                (
                    &paths[i],
                    &want,
                    &scores[i],
                    r["ja_score"][0].as_f64().unwrap(),
                    &mut jas_same,
                ),
                (
                    &act_paths[i],
                    &want_base,
                    &scores[chunk.len() + i],
                    r["base_score"][0].as_f64().unwrap(),
                    &mut act_same,
                ),
            ] {
                if got_path == want_path {
                    *same += 1;
                    let rel = (got.score - want_score).abs() / want_score.abs().max(1e-12);
                    assert!(
                        rel < 1e-3,
                        "{image}: score {} vs reference {want_score} (relative {rel:.2e})",
                        got.score
                    );
                } else {
                    eprintln!("{image}: path {got_path:?} vs reference {want_path:?}");
                }
            }
        }
    }
    eprintln!("JAS paths identical: {jas_same}/50, activation paths: {act_same}/50");
    assert!(
        jas_same >= 49,
        "JAS paths identical on only {jas_same}/50 images"
    );
    assert_eq!(
        act_same, 50,
        "activation paths identical on only {act_same}/50 images"
    );
}
