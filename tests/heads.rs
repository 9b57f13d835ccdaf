//! Attention-head units (`attn.z`) on the tiny fixture, against finite differences
//! computed here with forward passes only: the gradient of the target probability
//! with respect to every head output value (within 1e-3 of each layer's largest),
//! and a head path's JAS recomputed as a Riemann sum of central differences along
//! each head's scale (within 1e-3 relative). On both executors.

mod common;
use common::executors::{Executor, BOTH};
use neuronpath::attribution::{Attributor, ImageContext, Integration, ScoreForm};
use neuronpath::model::{self, Action, Activation, Intervention, LoadOptions, Site, Vit};
use neuronpath::numeric::softmax;

fn tiny_heads(on: Executor) -> Vit {
    let mut vit = model::load(
        &common::shared("fixtures/tiny-vit-hf"),
        &LoadOptions::default(),
    )
    .unwrap();
    vit.unit = Activation::AttnZ;
    on.place(vit)
}

fn image(vit: &Vit, i: usize, target: usize) -> ImageContext {
    let reference = common::npz("fixtures/tiny-vit-reference.npz");
    let pixels = reference["pixels"].to_f32().unwrap();
    let per_image = pixels.len() / reference["pixels"].shape[0];
    let p = pixels[i * per_image..(i + 1) * per_image].to_vec();
    ImageContext::new(vit, format!("image{i}"), p, target)
}

/// Target probability of `image` for each sequence, the head outputs of each
/// `(block, values)` replaced by `values` (`[S, d]`).
fn probabilities(vit: &Vit, image: &ImageContext, values: &[(usize, Vec<f32>)]) -> Vec<f32> {
    let s = values[0].1.len() / vit.config.hidden;
    let x: Vec<f32> = (0..s).flat_map(|_| image.pixels.iter().copied()).collect();
    let replace: Vec<Intervention> = values
        .iter()
        .map(|(l, v)| Intervention {
            site: vit.neuron_site(*l),
            action: Action::Replace(v),
        })
        .collect();
    softmax(&vit.logits(&x, &replace), vit.config.classes)
        .chunks_exact(vit.config.classes)
        .map(|p| p[image.target])
        .collect()
}

#[test]
fn head_gradients_equal_central_differences() {
    for on in BOTH {
        head_gradients_equal_central_differences_on(on);
    }
}

fn head_gradients_equal_central_differences_on(on: Executor) {
    let vit = tiny_heads(on);
    let img = image(&vit, 0, 1);
    let (d, layers) = (vit.config.hidden, vit.config.layers);
    let sites: Vec<Site> = (0..layers).map(|l| vit.neuron_site(l)).collect();
    let grads = vit.gradients(&img.pixels, 0, &[], &[img.target], &sites);
    let eps = 1e-2f32;
    for (l, &site) in sites.iter().enumerate() {
        // 2 d sequences: each value of this layer's heads moved by -eps and +eps;
        // the layers above follow.
        let values: Vec<f32> = (0..2 * d)
            .flat_map(|k| {
                let mut z = img.clean.neurons[l].clone();
                z[k / 2] += if k % 2 == 0 { -eps } else { eps };
                z
            })
            .collect();
        let p = probabilities(&vit, &img, &[(l, values)]);
        let got = grads.at(site);
        let scale = got.iter().fold(0f32, |m, g| m.max(g.abs()));
        for i in 0..d {
            let want = (p[2 * i + 1] - p[2 * i]) / (2.0 * eps);
            assert!(
                (got[i] - want).abs() <= 1e-3 * scale.max(1e-3),
                "{site} value {i}: {} vs {want} (scale {scale})",
                got[i]
            );
        }
    }
}

#[test]
fn a_head_paths_jas_equals_an_independent_riemann_sum() {
    for on in BOTH {
        a_head_paths_jas_equals_an_independent_riemann_sum_on(on);
    }
}

fn a_head_paths_jas_equals_an_independent_riemann_sum_on(on: Executor) {
    let vit = tiny_heads(on);
    let img = image(&vit, 1, 3);
    let m = 20;
    let attributor = Attributor {
        vit: &vit,
        rule: Integration::LeftRiemann(m),
        form: ScoreForm::Paper,
    };
    let (path, score) = attributor.locate_heads(&[&img]).remove(0);
    let (dh, layers) = (vit.config.head_dim(), vit.config.layers);
    let delta = 1e-2f32;
    // Sequences (k, j, sign): every path head scaled to k/m, head j's scale moved by
    // sign * delta.
    let seqs: Vec<(usize, usize, f32)> = (0..m)
        .flat_map(|k| (0..layers).flat_map(move |j| [(k, j, -delta), (k, j, delta)]))
        .collect();
    let values: Vec<(usize, Vec<f32>)> = (0..layers)
        .map(|l| {
            let v = seqs
                .iter()
                .flat_map(|&(k, j, moved)| {
                    let mut z = img.clean.neurons[l].clone();
                    let alpha = k as f32 / m as f32 + if j == l { moved } else { 0.0 };
                    let head = path[l];
                    z[head * dh..(head + 1) * dh]
                        .iter_mut()
                        .for_each(|v| *v *= alpha);
                    z
                })
                .collect();
            (l, v)
        })
        .collect();
    let p = probabilities(&vit, &img, &values);
    let want: f64 = p
        .chunks_exact(2)
        .map(|pair| (pair[1] - pair[0]) as f64 / (2.0 * delta as f64) / m as f64)
        .sum();
    let rel = (score.score - want).abs() / want.abs().max(1e-6);
    assert!(
        rel < 1e-3,
        "JAS {} vs Riemann sum of differences {want} ({rel:.1e})",
        score.score
    );
    assert_eq!(path.len(), layers);
}
