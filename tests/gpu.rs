//! The CUDA offload (`--features cuda`) on a machine with a device: the linear
//! layers against a float64 product computed here, and the JAS paths against the
//! reference code's. Without a CUDA device these tests say so and check nothing;
//! CI, which has none, only builds them.
#![cfg(feature = "cuda")]

mod common;
use neuronpath::attribution::{Attributor, ImageContext, Integration, ScoreForm};
use neuronpath::model::{self, gpu, kernels, LoadOptions};

fn device() -> bool {
    match gpu::enable(0) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("no CUDA device, nothing checked: {e:#}");
            false
        }
    }
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let h = (i ^ seed).wrapping_mul(2_654_435_761) >> 8;
            h as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

#[test]
fn linear_layers_on_the_gpu_match_a_float64_product() {
    if !device() {
        return;
    }
    let (rows, inp, out) = (394, 768, 3072);
    let x = values(rows * inp, 1);
    let w = values(out * inp, 2);
    let b = values(out, 3);
    let mut y = vec![0f32; rows * out];
    kernels::linear(&mut y, &x, rows, &w, &b);
    let mut dx = vec![0f32; rows * inp];
    kernels::linear_backward(&mut dx, &y, rows, &w, out);
    for r in (0..rows).step_by(37) {
        for o in (0..out).step_by(101) {
            let want: f64 = b[o] as f64
                + (0..inp)
                    .map(|i| x[r * inp + i] as f64 * w[o * inp + i] as f64)
                    .sum::<f64>();
            let got = y[r * out + o] as f64;
            assert!(
                (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                "y[{r},{o}] {got} vs {want}"
            );
        }
        for i in (0..inp).step_by(53) {
            let want: f64 = (0..out)
                .map(|o| y[r * out + o] as f64 * w[o * inp + i] as f64)
                .sum();
            let got = dx[r * inp + i] as f64;
            assert!(
                (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                "dx[{r},{i}] {got} vs {want}"
            );
        }
    }
}

#[test]
fn jas_paths_on_the_gpu_match_the_reference_code() {
    if !device() {
        return;
    }
    let vit = model::load(
        &common::shared("fixtures/vit-cifar10"),
        &LoadOptions::default(),
    )
    .unwrap();
    let attributor = Attributor {
        vit: &vit,
        rule: Integration::LeftRiemann(20),
        form: ScoreForm::Reference,
    };
    let records = common::reference_records("vit-cifar10-dev.json");
    let mut same = 0;
    for chunk in records.chunks(10) {
        let contexts: Vec<ImageContext> = common::contexts(&vit, chunk);
        let refs: Vec<&ImageContext> = contexts.iter().collect();
        for (r, path) in chunk.iter().zip(attributor.locate(&refs)) {
            same += usize::from(path == common::indices(&r["ja"]));
        }
    }
    assert!(same >= 49, "JAS paths identical on only {same}/50 images");
}
