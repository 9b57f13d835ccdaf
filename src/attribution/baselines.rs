//! The baselines the paper compares JAS paths with. Each picks one neuron per layer
//! by its own criterion; the path is then scored with the same JAS as the others.
//!
//! - `activation`: the largest clean CLS activation per layer.
//! - `influence`: influence patterns (Lu et al. 2021) as the reference code runs them:
//!   the input image goes from a zero tensor to itself along the integration rule,
//!   and each layer's neuron is the argmax of the step-weighted mean gradient of the
//!   target probability w.r.t. its CLS FFN activations (nothing is held fixed).
//! - `ig`: per-layer integrated gradients ("knowledge neurons", Dai et al. 2022):
//!   each layer on its own, its CLS FFN row scaled 0 -> 1 while the layers below stay
//!   clean and the layers above follow; the neuron of largest attribution.
//! - `random`: one uniformly random neuron per layer, from a seed and the image key,
//!   so a path does not depend on batching or on which images run with it.

use super::context::ImageContext;
use super::jas::Attributor;
use crate::model::backward::Gradients;
use crate::model::{Keep, RowAction, Vit};

/// The activation baseline: the neuron with the largest clean CLS activation per layer.
pub fn activation_path(image: &ImageContext) -> Vec<usize> {
    image.clean.cls_ffn.iter().map(|row| argmax(row)).collect()
}

/// Index of the largest value (the first, on ties).
pub fn argmax<T: Copy + PartialOrd>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

impl Attributor<'_> {
    /// Forward from block `from` with no intervention and backward of each
    /// sequence's target probability.
    fn natural_gradients(
        &self,
        x: Vec<f32>,
        from: usize,
        targets: &[usize],
        input_grad: bool,
    ) -> Gradients {
        let vit = self.vit;
        let out = vit.forward(
            x,
            from,
            &vec![RowAction::Keep; vit.config.layers],
            Keep::TAPE,
        );
        vit.backward(
            out.tape.as_ref().expect("tape kept"),
            &out.logits,
            targets,
            input_grad,
        )
    }

    /// Influence-pattern scores: per image and layer, the step-weighted mean gradient
    /// of the target probability w.r.t. each CLS FFN neuron as the input goes 0 -> x.
    pub fn influence_scores(&self, images: &[&ImageContext]) -> Vec<Vec<Vec<f64>>> {
        let vit = self.vit;
        let (alphas, weights) = self.rule.nodes();
        let m = alphas.len();
        let x: Vec<f32> = images
            .iter()
            .flat_map(|img| {
                (0..m).flat_map(|k| {
                    let scaled: Vec<f32> = img
                        .pixels
                        .iter()
                        .map(|&p| self.rule.scale(p, k, &alphas))
                        .collect();
                    vit.embed(&scaled)
                })
            })
            .collect();
        let grads = self.natural_gradients(x, 0, &self.step_targets(images), false);
        let f = vit.config.intermediate;
        (0..images.len())
            .map(|i| {
                grads
                    .cls_ffn
                    .iter()
                    .map(|g| {
                        let g = &g[i * m * f..(i + 1) * m * f];
                        (0..f).map(|n| self.mean_gradient(g, n, &weights)).collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// Per-layer integrated gradients of block `layer`'s CLS FFN neurons, per image:
    /// `activation x step-weighted mean gradient` with the row scaled 0 -> 1.
    pub fn layer_integrated_gradients(
        &self,
        images: &[&ImageContext],
        layer: usize,
    ) -> Vec<Vec<f64>> {
        let vit = self.vit;
        let (alphas, weights) = self.rule.nodes();
        let m = alphas.len();
        let f = vit.config.intermediate;
        let x: Vec<f32> = images
            .iter()
            .flat_map(|img| {
                let rows: Vec<f32> = (0..m)
                    .flat_map(|k| self.scaled_row(&img.clean, layer, None, k, &alphas))
                    .collect();
                vit.branch(&img.clean, layer, &rows)
            })
            .collect();
        let grads = self.natural_gradients(x, layer + 1, &self.step_targets(images), true);
        let g = vit.branch_gradient(layer, grads.input.as_ref().expect("input gradient"));
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let g = &g[i * m * f..(i + 1) * m * f];
                let row = &img.clean.cls_ffn[layer];
                (0..f)
                    .map(|n| row[n] as f64 * self.mean_gradient(g, n, &weights))
                    .collect()
            })
            .collect()
    }

    /// Influence-pattern paths: the argmax of each layer's influence score.
    pub fn influence_paths(&self, images: &[&ImageContext]) -> Vec<Vec<usize>> {
        self.influence_scores(images)
            .iter()
            .map(|layers| layers.iter().map(|s| argmax(s)).collect())
            .collect()
    }

    /// Knowledge-neuron paths: the argmax of each layer's integrated gradients.
    pub fn ig_paths(&self, images: &[&ImageContext]) -> Vec<Vec<usize>> {
        let mut paths = vec![Vec::new(); images.len()];
        for layer in 0..self.vit.config.layers {
            for (path, ig) in paths
                .iter_mut()
                .zip(self.layer_integrated_gradients(images, layer))
            {
                path.push(argmax(&ig));
            }
        }
        paths
    }
}

/// One uniformly random neuron per layer, determined by `seed` and the image key.
pub fn random_path(vit: &Vit, image: &ImageContext, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ fnv1a(image.key.as_bytes()));
    (0..vit.config.layers)
        .map(|_| rng.below(vit.config.intermediate))
        .collect()
}

/// A small, well-mixed generator (Steele et al. 2014); enough for choosing neurons.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for n < 2^32).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// FNV-1a hash of bytes: stable across runs and platforms, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
