//! The Joint Attribution Score (JAS) and layer-progressive path locating.
//!
//! JAS of a set of neurons: scale them together from 0 to their clean value along
//! the integration rule (other neurons keep theirs), take the gradient of the
//! target-class probability w.r.t. each scaled neuron at every step, and combine.
//! As in the reference code, every scaled block's neuron rows are *replaced* by
//! their clean values with the chosen neurons scaled, so upstream scaling does not
//! propagate into them; and when locating layer `l` its whole row is scaled at
//! once, so one batched pass scores every candidate of the layer.
//!
//! A neuron may span several token rows (MAE's FFN channel across the patches):
//! the score is then formed per token and summed over the tokens, divided by
//! [`Attributor::token_norm`], as the reference's MAE program does.

use super::context::ImageContext;
use super::integration::Integration;
use crate::model::{Action, Activation, CleanTrace, Compat, Gradients, Intervention, Vit};

/// How per-neuron integrated gradients combine into one path score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreForm {
    /// (sum of mean gradients) x (sum of activations): what the reference code computes.
    Reference,
    /// sum over neurons of activation x mean gradient: the paper's equation (a sum of
    /// per-neuron integrated gradients, each the neuron's own share).
    Paper,
}

impl ScoreForm {
    pub fn name(self) -> &'static str {
        match self {
            ScoreForm::Reference => "reference",
            ScoreForm::Paper => "paper",
        }
    }
}

/// One token's running sums over a path's neurons, in layer order.
#[derive(Clone, Copy, Default)]
struct TokenSums {
    a: f64,
    g: f64,
    ag: f64,
}

impl TokenSums {
    fn add(&mut self, a: f64, g: f64) {
        self.a += a;
        self.g += g;
        self.ag += a * g;
    }

    /// The token's score with one more neuron `(a, g)` on the path.
    fn with(self, form: ScoreForm, a: f64, g: f64) -> f64 {
        match form {
            ScoreForm::Reference => (self.a + a) * (self.g + g),
            ScoreForm::Paper => self.ag + a * g,
        }
    }

    fn score(self, form: ScoreForm) -> f64 {
        match form {
            ScoreForm::Reference => self.a * self.g,
            ScoreForm::Paper => self.ag,
        }
    }
}

/// The score of a path and what it is made of, layer by layer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PathScore {
    pub score: f64,
    /// Clean activation of the path neuron at each layer (mean over its tokens).
    pub activation: Vec<f64>,
    /// Step-weighted mean gradient of the target probability w.r.t. it (summed
    /// over its tokens).
    pub gradient: Vec<f64>,
    /// Each neuron's own integrated gradient: activation x mean gradient, per token,
    /// summed over the tokens and divided by the token norm.
    pub contribution: Vec<f64>,
}

pub struct Attributor<'a> {
    pub vit: &'a Vit,
    pub rule: Integration,
    pub form: ScoreForm,
}

/// One image's path neurons: per layer, per token, `(activation, mean gradient)`.
type Terms = Vec<Vec<(f64, f64)>>;

impl Attributor<'_> {
    /// What the token sum of a score is divided by: 1 for a one-token neuron; for
    /// a neuron across tokens, their number, or the 196 that the reference's MAE
    /// program divides by whatever the model (`--compat reference`).
    pub fn token_norm(&self) -> f64 {
        match (self.vit.neuron_rows(), self.vit.compat) {
            (1, _) => 1.0,
            (_, Compat::Reference) => 196.0,
            (rows, Compat::Principled) => rows as f64,
        }
    }

    /// Targets of `images`, each repeated once per integration step.
    pub(super) fn step_targets(&self, images: &[&ImageContext]) -> Vec<usize> {
        let m = self.rule.steps();
        images
            .iter()
            .flat_map(|img| std::iter::repeat_n(img.target, m))
            .collect()
    }

    /// `sum_k w_k g[k, row, n]` for one neuron at one token row; `grads` is one
    /// image's `[steps, rows, intermediate]`.
    pub(super) fn mean_gradient(
        &self,
        grads: &[f32],
        row: usize,
        n: usize,
        weights: &[f64],
    ) -> f64 {
        let f = self.vit.config.intermediate;
        let rows = self.vit.neuron_rows();
        weights
            .iter()
            .enumerate()
            .map(|(k, w)| w * grads[(k * rows + row) * f + n] as f64)
            .sum()
    }

    /// The clean rows of `layer` with `neuron` (or every neuron) scaled to step `k`.
    pub(super) fn scaled_rows(
        &self,
        clean: &CleanTrace,
        layer: usize,
        neuron: Option<usize>,
        k: usize,
        alphas: &[f32],
    ) -> Vec<f32> {
        let f = self.vit.config.intermediate;
        let mut rows = clean.neurons[layer].clone();
        for row in rows.chunks_exact_mut(f) {
            match neuron {
                Some(n) => row[n] = self.rule.scale(row[n], k, alphas),
                None => row
                    .iter_mut()
                    .for_each(|v| *v = self.rule.scale(*v, k, alphas)),
            }
        }
        rows
    }

    /// Block `layer`'s scaled rows of every image and step: `neurons[i]` only (or
    /// the whole row when `None`).
    fn layer_rows(
        &self,
        images: &[&ImageContext],
        layer: usize,
        neurons: impl Fn(usize) -> Option<usize>,
        alphas: &[f32],
    ) -> Vec<f32> {
        let neurons = &neurons;
        images
            .iter()
            .enumerate()
            .flat_map(|(i, img)| {
                (0..alphas.len())
                    .flat_map(move |k| self.scaled_rows(&img.clean, layer, neurons(i), k, alphas))
            })
            .collect()
    }

    /// Image `i`'s slice of a site gradient `[images * steps, rows, f]`.
    fn image_grads<'g>(&self, grads: &'g Gradients, layer: usize, i: usize) -> &'g [f32] {
        let per_image = self.rule.steps() * self.vit.neuron_rows() * self.vit.config.intermediate;
        &grads.at(self.vit.neuron_site(layer))[i * per_image..(i + 1) * per_image]
    }

    /// Per token, the clean activation and mean gradient of neuron `n` of `layer`.
    fn neuron_terms(
        &self,
        img: &ImageContext,
        layer: usize,
        n: usize,
        grads: &[f32],
        weights: &[f64],
    ) -> Vec<(f64, f64)> {
        let f = self.vit.config.intermediate;
        (0..self.vit.neuron_rows())
            .map(|r| {
                let a = img.clean.neurons[layer][r * f + n] as f64;
                (a, self.mean_gradient(grads, r, n, weights))
            })
            .collect()
    }

    /// Per token, the running sums over a path's neurons.
    fn token_sums(&self, terms: &Terms) -> Vec<TokenSums> {
        let mut sums = vec![TokenSums::default(); self.vit.neuron_rows()];
        for layer in terms {
            for (sum, &(a, g)) in sums.iter_mut().zip(layer) {
                sum.add(a, g);
            }
        }
        sums
    }

    /// The score of a whole path from its terms, and its per-layer breakdown.
    fn path_score(&self, terms: Terms) -> PathScore {
        let norm = self.token_norm();
        let rows = self.vit.neuron_rows() as f64;
        let score = self
            .token_sums(&terms)
            .iter()
            .map(|t| t.score(self.form))
            .sum::<f64>()
            / norm;
        PathScore {
            score,
            activation: terms
                .iter()
                .map(|l| l.iter().map(|t| t.0).sum::<f64>() / rows)
                .collect(),
            gradient: terms.iter().map(|l| l.iter().map(|t| t.1).sum()).collect(),
            contribution: terms
                .iter()
                .map(|l| l.iter().map(|t| t.0 * t.1).sum::<f64>() / norm)
                .collect(),
        }
    }

    /// The neuron of `layer` that maximises the score of the path so far plus it.
    fn best_candidate(
        &self,
        img: &ImageContext,
        layer: usize,
        sums: &[TokenSums],
        grads: &[f32],
        weights: &[f64],
    ) -> usize {
        let f = self.vit.config.intermediate;
        let acts = &img.clean.neurons[layer];
        let mut best = (f64::NEG_INFINITY, 0);
        for n in 0..f {
            let score = sums
                .iter()
                .enumerate()
                .map(|(r, sum)| {
                    let g = self.mean_gradient(grads, r, n, weights);
                    sum.with(self.form, acts[r * f + n] as f64, g)
                })
                .sum::<f64>()
                / self.token_norm();
            if score > best.0 {
                best = (score, n);
            }
        }
        best.1
    }

    /// Layer-progressive locating: at each layer, the neuron maximising the JAS of
    /// the path so far plus that neuron. Images are processed together, layer by layer.
    pub fn locate(&self, images: &[&ImageContext]) -> Vec<Vec<usize>> {
        self.locate_and_score(images)
            .into_iter()
            .map(|(path, _)| path)
            .collect()
    }

    /// [`Attributor::locate`], and the JAS of each found path (as [`Attributor::score`]
    /// gives it, but without a forward pass of its own).
    ///
    /// Pass `l` scales the path neurons of the layers below `l` and all of layer `l`
    /// ([`crate::model::Progression`]: each pass runs forward from the layer it
    /// changes). The pass after the last layer, with only path neurons scaled, is
    /// the path's score.
    pub fn locate_and_score(&self, images: &[&ImageContext]) -> Vec<(Vec<usize>, PathScore)> {
        if self.vit.unit == Activation::AttnZ {
            return self.locate_heads(images);
        }
        let vit = self.vit;
        let (alphas, weights) = self.rule.nodes();
        let layers = vit.config.layers;
        let targets = self.step_targets(images);
        let cleans: Vec<&CleanTrace> = images.iter().map(|img| &img.clean).collect();
        let mut progression = vit.progression(&cleans);
        let mut paths: Vec<Vec<usize>> = vec![Vec::new(); images.len()];
        let mut scores = Vec::new();
        for l in 0..=layers {
            let settled = match l {
                0 => Vec::new(),
                _ => self.layer_rows(images, l - 1, |i| Some(paths[i][l - 1]), &alphas),
            };
            let top = match l < layers {
                true => self.layer_rows(images, l, |_| None, &alphas),
                false => Vec::new(),
            };
            let grads = progression.pass(&settled, &top, &targets);
            for (i, img) in images.iter().enumerate() {
                let terms: Terms = (0..l)
                    .map(|j| {
                        let g = self.image_grads(&grads, j, i);
                        self.neuron_terms(img, j, paths[i][j], g, &weights)
                    })
                    .collect();
                if l == layers {
                    scores.push(self.path_score(terms));
                } else {
                    let g = self.image_grads(&grads, l, i);
                    let best = self.best_candidate(img, l, &self.token_sums(&terms), g, &weights);
                    paths[i].push(best);
                }
            }
        }
        paths.into_iter().zip(scores).collect()
    }

    /// JAS of whole paths, one per `(image, path)`, only the path units scaled.
    pub fn score(&self, items: &[(&ImageContext, &[usize])]) -> Vec<PathScore> {
        let vit = self.vit;
        if vit.unit == Activation::AttnZ {
            let images: Vec<&ImageContext> = items.iter().map(|(img, _)| *img).collect();
            let paths: Vec<Vec<usize>> = items.iter().map(|(_, p)| p.to_vec()).collect();
            return self.score_heads(&images, &paths);
        }
        let (alphas, weights) = self.rule.nodes();
        let layers = vit.config.layers;
        let images: Vec<&ImageContext> = items.iter().map(|(img, _)| *img).collect();
        let rows: Vec<Vec<f32>> = (0..layers)
            .map(|j| self.layer_rows(&images, j, |i| Some(items[i].1[j]), &alphas))
            .collect();
        let replacements: Vec<Intervention> = rows
            .iter()
            .enumerate()
            .map(|(j, rows)| Intervention {
                site: vit.neuron_site(j),
                action: Action::Replace(rows),
            })
            .collect();
        let cleans: Vec<&CleanTrace> = images.iter().map(|img| &img.clean).collect();
        let grads = vit.branched_gradients(&cleans, &replacements, &self.step_targets(&images));
        items
            .iter()
            .enumerate()
            .map(|(i, (img, path))| {
                let terms: Terms = (0..layers)
                    .map(|j| {
                        let g = self.image_grads(&grads, j, i);
                        self.neuron_terms(img, j, path[j], g, &weights)
                    })
                    .collect();
                self.path_score(terms)
            })
            .collect()
    }
}
