//! The baselines the paper compares JAS paths with. Each picks one neuron per layer
//! by its own criterion; the path is then scored with the same JAS as the others.
//! A neuron spanning several tokens (MAE) is judged by its values summed (or
//! averaged) over them, as the reference's MAE programs do.
//!
//! - `activation`: the largest clean activation per layer.
//! - `influence`: influence patterns (Lu et al. 2021) as the reference code runs them:
//!   the input image goes from a zero tensor to itself along the integration rule,
//!   and each layer's neuron is the argmax of the step-weighted mean gradient of the
//!   target probability w.r.t. its neurons (nothing is held fixed).
//! - `ig`: per-layer integrated gradients ("knowledge neurons", Dai et al. 2022):
//!   each layer on its own, its neurons scaled 0 -> 1 while the layers below stay
//!   clean and the layers above follow; the neuron of largest attribution.
//! - `random`: one uniformly random neuron per layer, from a seed and the image key,
//!   so a path does not depend on batching or on which images run with it.

use super::context::ImageContext;
use super::jas::Attributor;
use super::path::NeuronPath;
use super::search::top_indices;
use crate::model::{Action, CleanTrace, Compat, Intervention, Site, Tokens, Vit};
use crate::numeric::{argmax, fnv1a, SplitMix64};

/// The activation baseline: per layer, the `top_k` neurons with the largest clean
/// activation (summed over its tokens), largest first.
pub fn activation_path(vit: &Vit, image: &ImageContext, top_k: usize) -> NeuronPath {
    let f = vit.config.intermediate;
    let layers = image.clean.neurons.iter().map(|rows| {
        let totals: Vec<f64> = (0..f)
            .map(|n| rows.chunks_exact(f).map(|r| r[n] as f64).sum())
            .collect();
        top_indices(&totals, top_k)
    });
    NeuronPath(layers.collect())
}

impl Attributor<'_> {
    /// The embedded inputs of every image scaled from zero along the rule, `[images
    /// * steps, tokens, hidden]`.
    fn scaled_inputs(&self, images: &[&ImageContext], alphas: &[f32]) -> Vec<Vec<f32>> {
        images
            .iter()
            .flat_map(|img| {
                (0..alphas.len()).map(|k| {
                    img.pixels
                        .iter()
                        .map(|&p| self.rule.scale(p, k, alphas))
                        .collect()
                })
            })
            .collect()
    }

    /// Influence-pattern scores: per image and layer, the step-weighted mean gradient
    /// of the target probability w.r.t. each neuron (mean over its tokens) as the
    /// input goes 0 -> x.
    pub fn influence_scores(&self, images: &[&ImageContext]) -> Vec<Vec<Vec<f64>>> {
        let vit = self.vit;
        let (alphas, weights) = self.rule.nodes();
        let inputs = self.scaled_inputs(images, &alphas);
        let x: Vec<f32> = inputs.concat();
        let targets = self.step_targets(images, 1);
        let layers = vit.config.layers;
        let per_layer: Vec<Vec<f32>> = if self.skips_chosen_blocks() {
            self.influence_gradients_skipping(x, &inputs, &targets)
        } else {
            let sites: Vec<Site> = (0..layers).map(|l| vit.neuron_site(l)).collect();
            let grads = vit.gradients(&x, 0, &[], &targets, &sites);
            sites.iter().map(|&s| grads.at(s).to_vec()).collect()
        };
        let (f, rows) = (vit.config.intermediate, vit.neuron_rows());
        let per_image = alphas.len() * rows * f;
        (0..images.len())
            .map(|i| {
                per_layer
                    .iter()
                    .map(|g| {
                        let g = &g[i * per_image..(i + 1) * per_image];
                        (0..f)
                            .map(|n| {
                                (0..rows)
                                    .map(|r| self.mean_gradient(g, r, n, &weights))
                                    .sum::<f64>()
                                    / rows as f64
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// Whether influence follows the reference's MAE program, which skips the blocks
    /// of the layers already chosen while it searches the next (`--compat reference`
    /// with a neuron across the patch tokens).
    fn skips_chosen_blocks(&self) -> bool {
        self.vit.compat == Compat::Reference && self.vit.neuron_tokens != Tokens::Cls
    }

    /// The reference MAE program's influence gradients: for layer `l`, the blocks
    /// below are skipped (the embedded input `x` enters block `l`), and block `l`'s
    /// neuron rows are replaced by their values in the full natural pass.
    fn influence_gradients_skipping(
        &self,
        x: Vec<f32>,
        inputs: &[Vec<f32>],
        targets: &[usize],
    ) -> Vec<Vec<f32>> {
        let vit = self.vit;
        let natural: Vec<CleanTrace> = inputs.iter().map(|p| vit.clean_forward(p)).collect();
        (0..vit.config.layers)
            .map(|l| {
                let values: Vec<f32> = natural
                    .iter()
                    .flat_map(|t| t.neurons[l].iter().copied())
                    .collect();
                let site = vit.neuron_site(l);
                let replace = [Intervention {
                    site,
                    action: Action::Replace(&values),
                }];
                vit.gradients(&x, l, &replace, targets, &[site])
                    .at(site)
                    .to_vec()
            })
            .collect()
    }

    /// Per-layer integrated gradients of block `layer`'s neurons, per image:
    /// `activation x step-weighted mean gradient` with the layer scaled 0 -> 1,
    /// summed over the neuron's tokens.
    pub fn layer_integrated_gradients(
        &self,
        images: &[&ImageContext],
        layer: usize,
    ) -> Vec<Vec<f64>> {
        let vit = self.vit;
        let (alphas, weights) = self.rule.nodes();
        let (f, rows) = (vit.config.intermediate, vit.neuron_rows());
        let values: Vec<f32> = images
            .iter()
            .flat_map(|img| {
                (0..alphas.len())
                    .flat_map(|k| self.scaled_rows(&img.clean, layer, None, k, &alphas))
            })
            .collect();
        let site = vit.neuron_site(layer);
        let replace = [Intervention {
            site,
            action: Action::Replace(&values),
        }];
        let cleans: Vec<&CleanTrace> = images.iter().map(|img| &img.clean).collect();
        let grads = vit.branched_gradients(&cleans, &replace, &self.step_targets(images, 1));
        let per_image = alphas.len() * rows * f;
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let g = &grads.at(site)[i * per_image..(i + 1) * per_image];
                let acts = &img.clean.neurons[layer];
                (0..f)
                    .map(|n| {
                        (0..rows)
                            .map(|r| acts[r * f + n] as f64 * self.mean_gradient(g, r, n, &weights))
                            .sum()
                    })
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
        .map(|_| rng.below(vit.units()))
        .collect()
}
