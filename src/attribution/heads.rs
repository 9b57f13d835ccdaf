//! Attention-head paths: the unit is one head's output at its tokens before the
//! output projection (`blocks.N.attn.z@cls`), scaled from 0 to its value along the
//! integration rule as neurons are, with the same layer-progressive search: pass
//! `l` replaces the path heads of the layers below (scaled) and every head of layer
//! `l` (all scaled), and the gradients at every replaced site come from one pass.
//!
//! A head's value is a vector, so its attribution is its integrated gradient
//! along its own scale: `sum_k w_k <dp/dz, z>` over the head's values (and tokens).
//! A path's JAS is the sum of its heads' integrated gradients (the paper's form;
//! with the unit's value being its scale, the reference's `(sum of gradients) x
//! (sum of values)` would only multiply it by the path length).

use super::context::ImageContext;
use super::jas::{Attributor, PathScore};
use crate::model::{Action, CleanTrace, Vit};
use crate::numeric::argmax;

impl Attributor<'_> {
    /// Block `layer`'s head values of every image and step, head `heads(i)` of image
    /// `i` scaled (every head when `None`).
    fn head_rows(
        &self,
        images: &[&ImageContext],
        layer: usize,
        heads: impl Fn(usize) -> Option<usize>,
        alphas: &[f32],
    ) -> Vec<f32> {
        let dh = self.vit.config.head_dim();
        let mut out = Vec::new();
        for (i, img) in images.iter().enumerate() {
            let clean = &img.clean.neurons[layer];
            for k in 0..alphas.len() {
                let mut rows = clean.clone();
                for row in rows.chunks_exact_mut(self.vit.unit_width()) {
                    let span = match heads(i) {
                        Some(h) => &mut row[h * dh..(h + 1) * dh],
                        None => &mut row[..],
                    };
                    span.iter_mut()
                        .for_each(|v| *v = self.rule.scale(*v, k, alphas));
                }
                out.extend(rows);
            }
        }
        out
    }

    /// Per image, per layer up to `layers_run`, every head's integrated gradient,
    /// with the given heads replaced as `rows[layer]` say.
    fn head_gradients(&self, images: &[&ImageContext], rows: &[Vec<f32>]) -> Vec<Vec<Vec<f64>>> {
        let vit = self.vit;
        let (_, weights) = self.rule.nodes();
        let sites: Vec<_> = (0..rows.len()).map(|j| vit.neuron_site(j)).collect();
        let replace = vit.at_neuron_sites(rows.iter().map(|r| Action::Replace(r)));
        let cleans: Vec<&CleanTrace> = images.iter().map(|img| &img.clean).collect();
        let targets = self.step_targets(images, 1);
        let grads = vit.gradients_from_clean(&cleans, 0, &replace, &targets, &sites);
        let (width, dh, m) = (vit.unit_width(), vit.config.head_dim(), weights.len());
        let per_image = m * vit.neuron_rows() * width;
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                sites
                    .iter()
                    .map(|&site| {
                        let g = &grads.at(site)[i * per_image..(i + 1) * per_image];
                        let z = &img.clean.neurons[site.block];
                        (0..vit.units())
                            .map(|h| {
                                let ig = |k: usize| -> f64 {
                                    let g = &g[k * z.len()..(k + 1) * z.len()];
                                    z.chunks_exact(width)
                                        .zip(g.chunks_exact(width))
                                        .map(|(z, g)| {
                                            let span = h * dh..(h + 1) * dh;
                                            z[span.clone()]
                                                .iter()
                                                .zip(&g[span])
                                                .map(|(z, g)| *z as f64 * *g as f64)
                                                .sum::<f64>()
                                        })
                                        .sum()
                                };
                                weights.iter().enumerate().map(|(k, w)| w * ig(k)).sum()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// Layer-progressive head paths and their JAS.
    pub fn locate_heads(&self, images: &[&ImageContext]) -> Vec<(Vec<usize>, PathScore)> {
        let layers = self.vit.config.layers;
        let (alphas, _) = self.rule.nodes();
        let mut paths: Vec<Vec<usize>> = vec![Vec::new(); images.len()];
        for l in 0..layers {
            let rows: Vec<Vec<f32>> = (0..=l)
                .map(|j| {
                    let path = |i: usize| paths[i].get(j).copied();
                    self.head_rows(images, j, path, &alphas)
                })
                .collect();
            for (path, igs) in paths.iter_mut().zip(self.head_gradients(images, &rows)) {
                let so_far: f64 = path.iter().zip(&igs).map(|(&h, ig)| ig[h]).sum();
                let total: Vec<f64> = igs[l].iter().map(|ig| so_far + ig).collect();
                path.push(argmax(&total));
            }
        }
        let scores = self.score_heads(images, &paths);
        paths.into_iter().zip(scores).collect()
    }

    /// The JAS of each image's head path, only the path heads scaled.
    pub fn score_heads(&self, images: &[&ImageContext], paths: &[Vec<usize>]) -> Vec<PathScore> {
        let (alphas, _) = self.rule.nodes();
        let rows: Vec<Vec<f32>> = (0..self.vit.config.layers)
            .map(|j| self.head_rows(images, j, |i| Some(paths[i][j]), &alphas))
            .collect();
        paths
            .iter()
            .zip(self.head_gradients(images, &rows))
            .map(|(path, igs)| {
                let contribution: Vec<f64> = path.iter().zip(&igs).map(|(&h, ig)| ig[h]).collect();
                PathScore {
                    score: contribution.iter().sum(),
                    activation: vec![1.0; path.len()],
                    gradient: contribution.clone(),
                    contribution,
                }
            })
            .collect()
    }
}

/// The activation baseline for heads: per layer, the head whose output (at its
/// tokens) has the largest norm.
pub fn largest_heads(vit: &Vit, image: &ImageContext) -> Vec<usize> {
    let dh = vit.config.head_dim();
    image
        .clean
        .neurons
        .iter()
        .map(|z| {
            let norms: Vec<f64> = (0..vit.units())
                .map(|h| {
                    z.chunks_exact(vit.unit_width())
                        .flat_map(|row| &row[h * dh..(h + 1) * dh])
                        .map(|v| (*v as f64).powi(2))
                        .sum()
                })
                .collect();
            argmax(&norms)
        })
        .collect()
}
