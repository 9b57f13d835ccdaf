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
//!
//! A top-K path has several neurons per layer, all scaled together; the score
//! sums over all of them, or, with `--compat reference`, over the last-listed one
//! of each layer only, as the reference's top-K program ([`Attributor::counted`]).
//! The search itself (greedy, top-K, beam) is in [`super::search`].

use super::context::ImageContext;
use super::integration::Integration;
use super::path::NeuronPath;
use crate::model::{Action, Activation, CleanTrace, Compat, Gradients, Vit};
use crate::names::Named;

/// How per-neuron integrated gradients combine into one path score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreForm {
    /// (sum of mean gradients) x (sum of activations): what the reference code computes.
    Reference,
    /// sum over neurons of activation x mean gradient: the paper's equation (a sum of
    /// per-neuron integrated gradients, each the neuron's own share).
    Paper,
}

crate::names::display_by_name!(ScoreForm);

impl Named for ScoreForm {
    const ALL: &'static [ScoreForm] = &[ScoreForm::Reference, ScoreForm::Paper];

    fn name(self) -> &'static str {
        match self {
            ScoreForm::Reference => "reference",
            ScoreForm::Paper => "paper",
        }
    }

    fn help(self) -> &'static str {
        match self {
            ScoreForm::Reference => "(sum of mean gradients) x (sum of activations): what the reference code computes",
            ScoreForm::Paper => "sum over neurons of activation x mean gradient: the paper's equation (each neuron's own integrated gradient)",
        }
    }
}

/// One token's running sums over a path's neurons, in layer order.
#[derive(Clone, Copy, Default)]
pub(super) struct TokenSums {
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

/// The score of a path and what it is made of, layer by layer. A layer with several
/// neurons (a top-K path) gives the sum over the neurons its score counts.
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

/// One neuron's `(activation, mean gradient)` per token.
type NeuronTerms = Vec<(f64, f64)>;
/// A path's counted neurons: per layer, per neuron, its terms.
pub(super) type Terms = Vec<Vec<NeuronTerms>>;

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

    /// The neurons of a path's layer that its score counts: all of them, or with
    /// `--compat reference` only the last-listed, as the reference's top-K program
    /// (its loop overwrites instead of summing). One neuron per layer: the same.
    pub fn counted<'p>(&self, layer: &'p [usize]) -> &'p [usize] {
        match self.vit.compat {
            Compat::Principled => layer,
            Compat::Reference => &layer[layer.len().saturating_sub(1)..],
        }
    }

    /// Targets of `images`, each repeated once per variant and integration step.
    pub(super) fn step_targets(&self, images: &[&ImageContext], variants: usize) -> Vec<usize> {
        let m = self.rule.steps();
        images
            .iter()
            .flat_map(|img| std::iter::repeat_n(img.target, variants * m))
            .collect()
    }

    /// `sum_k w_k g[k, row, n]` for one neuron at one token row; `grads` is one
    /// sequence's `[steps, rows, intermediate]`.
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

    /// The clean rows of `layer` with `neurons` (or every neuron) scaled to step `k`.
    pub(super) fn scaled_rows(
        &self,
        clean: &CleanTrace,
        layer: usize,
        neurons: Option<&[usize]>,
        k: usize,
        alphas: &[f32],
    ) -> Vec<f32> {
        let f = self.vit.config.intermediate;
        let mut rows = clean.neurons[layer].clone();
        for row in rows.chunks_exact_mut(f) {
            match neurons {
                Some(ns) => ns
                    .iter()
                    .for_each(|&n| row[n] = self.rule.scale(row[n], k, alphas)),
                None => row
                    .iter_mut()
                    .for_each(|v| *v = self.rule.scale(*v, k, alphas)),
            }
        }
        rows
    }

    /// Block `layer`'s scaled rows of every sequence and step, `variants` sequences
    /// per image: `neurons(s)` only (or the whole row when `None`) for sequence `s`.
    pub(super) fn layer_rows<'p>(
        &self,
        images: &[&ImageContext],
        variants: usize,
        layer: usize,
        neurons: impl Fn(usize) -> Option<&'p [usize]>,
        alphas: &[f32],
    ) -> Vec<f32> {
        let neurons = &neurons;
        (0..images.len() * variants)
            .flat_map(|s| {
                let clean = &images[s / variants].clean;
                (0..alphas.len())
                    .flat_map(move |k| self.scaled_rows(clean, layer, neurons(s), k, alphas))
            })
            .collect()
    }

    /// Sequence `s`'s slice of a site gradient `[sequences * steps, rows, f]`.
    pub(super) fn sequence_grads<'g>(
        &self,
        grads: &'g Gradients,
        layer: usize,
        s: usize,
    ) -> &'g [f32] {
        let per_seq = self.rule.steps() * self.vit.neuron_rows() * self.vit.config.intermediate;
        &grads.at(self.vit.neuron_site(layer))[s * per_seq..(s + 1) * per_seq]
    }

    /// Per token, the clean activation and mean gradient of neuron `n` of `layer`.
    fn neuron_terms(
        &self,
        img: &ImageContext,
        layer: usize,
        n: usize,
        grads: &[f32],
        weights: &[f64],
    ) -> NeuronTerms {
        let f = self.vit.config.intermediate;
        (0..self.vit.neuron_rows())
            .map(|r| {
                let a = img.clean.neurons[layer][r * f + n] as f64;
                (a, self.mean_gradient(grads, r, n, weights))
            })
            .collect()
    }

    /// The terms of the counted neurons of `path`'s layers, from sequence `s` of
    /// `grads`.
    pub(super) fn path_terms(
        &self,
        img: &ImageContext,
        path: &[Vec<usize>],
        grads: &Gradients,
        s: usize,
        weights: &[f64],
    ) -> Terms {
        path.iter()
            .enumerate()
            .map(|(j, neurons)| {
                let g = self.sequence_grads(grads, j, s);
                self.counted(neurons)
                    .iter()
                    .map(|&n| self.neuron_terms(img, j, n, g, weights))
                    .collect()
            })
            .collect()
    }

    /// Per token, the running sums over a path's neurons.
    pub(super) fn token_sums(&self, terms: &Terms) -> Vec<TokenSums> {
        let mut sums = vec![TokenSums::default(); self.vit.neuron_rows()];
        for neuron in terms.iter().flatten() {
            for (sum, &(a, g)) in sums.iter_mut().zip(neuron) {
                sum.add(a, g);
            }
        }
        sums
    }

    /// The score of a whole path from its terms, and its per-layer breakdown (each
    /// layer's counted neurons summed).
    pub(super) fn path_score(&self, terms: Terms) -> PathScore {
        let norm = self.token_norm();
        let rows = self.vit.neuron_rows() as f64;
        let score = self
            .token_sums(&terms)
            .iter()
            .map(|t| t.score(self.form))
            .sum::<f64>()
            / norm;
        let per_layer = |f: &dyn Fn(&(f64, f64)) -> f64| -> Vec<f64> {
            terms
                .iter()
                .map(|l| l.iter().flatten().map(f).sum::<f64>())
                .collect()
        };
        PathScore {
            score,
            activation: per_layer(&|t| t.0 / rows),
            gradient: per_layer(&|t| t.1),
            contribution: per_layer(&|t| t.0 * t.1 / norm),
        }
    }

    /// The score of the path so far (`sums`) plus each neuron of `layer` in turn.
    pub(super) fn candidate_scores(
        &self,
        img: &ImageContext,
        layer: usize,
        sums: &[TokenSums],
        grads: &[f32],
        weights: &[f64],
    ) -> Vec<f64> {
        let f = self.vit.config.intermediate;
        let acts = &img.clean.neurons[layer];
        (0..f)
            .map(|n| {
                sums.iter()
                    .enumerate()
                    .map(|(r, sum)| {
                        let g = self.mean_gradient(grads, r, n, weights);
                        sum.with(self.form, acts[r * f + n] as f64, g)
                    })
                    .sum::<f64>()
                    / self.token_norm()
            })
            .collect()
    }

    /// JAS of whole paths, one per `(image, path)`, only the path neurons scaled.
    pub fn score(&self, items: &[(&ImageContext, &NeuronPath)]) -> Vec<PathScore> {
        let vit = self.vit;
        if vit.unit == Activation::AttnZ {
            let images: Vec<&ImageContext> = items.iter().map(|(img, _)| *img).collect();
            let paths: Vec<Vec<usize>> = items
                .iter()
                .map(|(_, p)| p.single().expect("head paths have one head per layer"))
                .collect();
            return self.score_heads(&images, &paths);
        }
        let (alphas, weights) = self.rule.nodes();
        let layers = vit.config.layers;
        let images: Vec<&ImageContext> = items.iter().map(|(img, _)| *img).collect();
        let rows: Vec<Vec<f32>> = (0..layers)
            .map(|j| self.layer_rows(&images, 1, j, |i| Some(items[i].1.at(j)), &alphas))
            .collect();
        let replacements = vit.at_neuron_sites(rows.iter().map(|r| Action::Replace(r)));
        let cleans: Vec<&CleanTrace> = images.iter().map(|img| &img.clean).collect();
        let grads = vit.branched_gradients(&cleans, &replacements, &self.step_targets(&images, 1));
        items
            .iter()
            .enumerate()
            .map(|(i, (img, path))| {
                self.path_score(self.path_terms(img, &path.0, &grads, i, &weights))
            })
            .collect()
    }
}
