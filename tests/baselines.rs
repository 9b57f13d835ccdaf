//! The baselines against quantities computed here without the backward pass:
//! per-layer integrated gradients against a brute-force Riemann sum of
//! finite-difference gradients, and against the completeness axiom; `random`
//! for reproducibility, range and spread. (`influence` is checked against the
//! reference code's own paths in `reference_paths.rs`.) The integrated gradients
//! on both executors.

mod common;
use common::executors::{Executor, BOTH};
use neuronpath::attribution::baselines::random_path;
use neuronpath::attribution::{Attributor, ImageContext, Integration, ScoreForm};
use neuronpath::model::{self, Action, Intervention, LoadOptions, Vit};
use neuronpath::numeric::softmax;

fn tiny_vit(on: Executor) -> Vit {
    on.place(
        model::load(
            &common::shared("fixtures/tiny-vit-hf"),
            &LoadOptions::default(),
        )
        .unwrap(),
    )
}

/// Two images of the tiny fixture's reference pixels, explaining class 1 and 3.
fn tiny_images(vit: &Vit) -> Vec<ImageContext> {
    let reference = common::npz("fixtures/tiny-vit-reference.npz");
    let pixels = reference["pixels"].to_f32().unwrap();
    let per_image = pixels.len() / reference["pixels"].shape[0];
    [(0, 1), (1, 3)]
        .into_iter()
        .map(|(i, target)| {
            let p = pixels[i * per_image..(i + 1) * per_image].to_vec();
            ImageContext::new(vit, format!("image{i}"), p, target)
        })
        .collect()
}

/// Target probability with block `layer`'s CLS FFN row replaced by each of `rows`
/// (`[S, intermediate]`), every other block running normally.
fn probability_with_row(vit: &Vit, image: &ImageContext, layer: usize, rows: &[f32]) -> Vec<f32> {
    let s = rows.len() / vit.config.intermediate;
    let x: Vec<f32> = (0..s).flat_map(|_| image.pixels.iter().copied()).collect();
    let replace = [Intervention {
        site: vit.neuron_site(layer),
        action: Action::Replace(rows),
    }];
    softmax(&vit.logits(&x, &replace), vit.config.classes)
        .chunks_exact(vit.config.classes)
        .map(|p| p[image.target])
        .collect()
}

#[test]
fn layer_integrated_gradients_equal_a_brute_force_riemann_sum() {
    for on in BOTH {
        layer_integrated_gradients_equal_a_brute_force_riemann_sum_on(on);
    }
}

fn layer_integrated_gradients_equal_a_brute_force_riemann_sum_on(on: Executor) {
    let vit = tiny_vit(on);
    // The finite differences: forward passes on the CPU.
    let cpu = tiny_vit(Executor::Cpu);
    let images = tiny_images(&vit);
    let refs: Vec<&ImageContext> = images.iter().collect();
    let m = 20;
    let attributor = Attributor {
        vit: &vit,
        rule: Integration::LeftRiemann(m),
        form: ScoreForm::Reference,
    };
    let f = vit.config.intermediate;
    let eps = 1e-2f32;
    for layer in 0..vit.config.layers {
        let got = attributor.layer_integrated_gradients(&refs, layer);
        for (img, got) in images.iter().zip(&got) {
            let clean = &img.clean.neurons[layer];
            // Central differences at every step, every neuron: 2 * m * f sequences.
            let mut rows = Vec::with_capacity(2 * m * f * f);
            for k in 0..m {
                let alpha = k as f32 / m as f32;
                for n in 0..f {
                    for sign in [1.0, -1.0] {
                        let mut row: Vec<f32> = clean.iter().map(|v| v * alpha).collect();
                        row[n] += sign * eps;
                        rows.extend(row);
                    }
                }
            }
            let p = probability_with_row(&cpu, img, layer, &rows);
            let want: Vec<f64> = (0..f)
                .map(|n| {
                    let mean_grad: f64 = (0..m)
                        .map(|k| {
                            let i = 2 * (k * f + n);
                            (p[i] - p[i + 1]) as f64 / (2.0 * eps as f64)
                        })
                        .sum::<f64>()
                        / m as f64;
                    clean[n] as f64 * mean_grad
                })
                .collect();
            let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
            for n in 0..f {
                assert!(
                    (got[n] - want[n]).abs() <= 2e-3 * scale + 1e-6,
                    "{on:?} layer {layer} neuron {n}: IG {} vs brute force {}",
                    got[n],
                    want[n]
                );
            }
        }
    }
}

#[test]
fn layer_integrated_gradients_are_complete() {
    for on in BOTH {
        layer_integrated_gradients_are_complete_on(on);
    }
}

fn layer_integrated_gradients_are_complete_on(on: Executor) {
    // Sum over neurons of IG = p(clean) - p(row at zero), up to quadrature error,
    // which 24-point Gauss-Legendre makes negligible.
    let vit = tiny_vit(on);
    let images = tiny_images(&vit);
    let refs: Vec<&ImageContext> = images.iter().collect();
    let attributor = Attributor {
        vit: &vit,
        rule: Integration::GaussLegendre(24),
        form: ScoreForm::Reference,
    };
    for layer in 0..vit.config.layers {
        for (img, ig) in images
            .iter()
            .zip(attributor.layer_integrated_gradients(&refs, layer))
        {
            let mut rows = img.clean.neurons[layer].clone();
            rows.extend(vec![0f32; vit.config.intermediate]);
            let p = probability_with_row(&vit, img, layer, &rows);
            let total: f64 = ig.iter().sum();
            let want = (p[0] - p[1]) as f64;
            assert!(
                (total - want).abs() < 1e-4 + 1e-3 * want.abs(),
                "{on:?} layer {layer}: sum of IG {total} vs p(clean) - p(zero row) {want}"
            );
        }
    }
}

#[test]
fn random_paths_are_reproducible_in_range_and_spread() {
    let vit = tiny_vit(Executor::Cpu);
    let images = tiny_images(&vit);
    let (layers, f) = (vit.config.layers, vit.config.intermediate);
    let a = random_path(&vit, &images[0], 7);
    assert_eq!(a.len(), layers);
    assert_eq!(a, random_path(&vit, &images[0], 7), "same seed, same image");
    let other_seeds = (8..40).filter(|&s| random_path(&vit, &images[0], s) != a);
    assert!(other_seeds.count() >= 30, "other seeds give other paths");
    // Over many seeds every neuron is drawn about equally often.
    let draws = 20_000;
    let mut counts = vec![0usize; f];
    for seed in 0..draws / layers as u64 {
        for n in random_path(&vit, &images[1], seed) {
            assert!(n < f, "neuron {n} out of range");
            counts[n] += 1;
        }
    }
    let expected = (draws / layers as u64 * layers as u64) as f64 / f as f64;
    for (n, &c) in counts.iter().enumerate() {
        assert!(
            (c as f64 - expected).abs() < 0.25 * expected,
            "neuron {n} drawn {c} times, expected about {expected:.0}"
        );
    }
}
