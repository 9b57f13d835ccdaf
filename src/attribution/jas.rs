//! The Joint Attribution Score (JAS) and layer-progressive path locating.
//!
//! JAS of a set of neurons: scale them together from 0 to their clean value along
//! the integration rule (other neurons keep theirs), take the gradient of the
//! target-class probability w.r.t. each scaled neuron at every step, and combine.
//! As in the reference code, every scaled block's CLS FFN row is *replaced* by
//! its clean row with the chosen neurons scaled, so upstream scaling does not
//! propagate into those rows; and when locating layer `l` its whole row is scaled
//! at once, so one batched pass scores every candidate of the layer.

use super::context::ImageContext;
use super::integration::Integration;
use crate::model::forward::{BlockTape, BranchPoint, Tape};
use crate::model::{CleanTrace, Keep, RowAction, Vit};

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

    /// Score of neurons with activations `a` and step-weighted mean gradients `g`.
    fn combine(self, a: impl Iterator<Item = f64>, g: impl Iterator<Item = f64>) -> f64 {
        match self {
            ScoreForm::Reference => {
                let (sa, sg) = a
                    .zip(g)
                    .fold((0.0, 0.0), |(sa, sg), (a, g)| (sa + a, sg + g));
                sa * sg
            }
            ScoreForm::Paper => a.zip(g).map(|(a, g)| a * g).sum(),
        }
    }
}

/// The score of a path and what it is made of, layer by layer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PathScore {
    pub score: f64,
    /// Clean activation of the path neuron at each layer.
    pub activation: Vec<f64>,
    /// Step-weighted mean gradient of the target probability w.r.t. it.
    pub gradient: Vec<f64>,
}

impl PathScore {
    /// Each neuron's own integrated gradient (activation x mean gradient).
    pub fn contributions(&self) -> Vec<f64> {
        self.activation
            .iter()
            .zip(&self.gradient)
            .map(|(a, g)| a * g)
            .collect()
    }
}

pub struct Attributor<'a> {
    pub vit: &'a Vit,
    pub rule: Integration,
    pub form: ScoreForm,
}

impl Attributor<'_> {
    /// For every image and step, replaces the CLS FFN row of every block by
    /// `rows(image, layer, step)` and returns the gradients of the target probability
    /// w.r.t. them: `[image][layer][step * intermediate]`.
    fn integrate(
        &self,
        images: &[&ImageContext],
        rows: impl Fn(usize, usize, usize) -> Vec<f32>,
    ) -> Vec<Vec<Vec<f32>>> {
        let vit = self.vit;
        let (f, layers) = (vit.config.intermediate, vit.config.layers);
        let m = self.rule.steps();
        let rows = &rows;
        let replaced: Vec<Vec<f32>> = (0..layers)
            .map(|j| {
                (0..images.len())
                    .flat_map(|i| (0..m).flat_map(move |k| rows(i, j, k)))
                    .collect::<Vec<f32>>()
            })
            .collect();
        let x = self.branch_at_block_0(images, &replaced[0]);
        let mut actions = vec![RowAction::Keep; layers];
        for (j, rows) in replaced.iter().enumerate().skip(1) {
            actions[j] = RowAction::Replace(rows);
        }
        let out = vit.forward(x, 1, &actions, Keep::TAPE);
        let targets = self.step_targets(images);
        let grads = vit.backward(
            out.tape.as_ref().expect("tape kept"),
            &out.logits,
            &targets,
            true,
        );
        let mut per_layer =
            vec![vit.branch_gradient(0, grads.input.as_ref().expect("input gradient"))];
        per_layer.extend(grads.cls_ffn);
        (0..images.len())
            .map(|i| {
                per_layer
                    .iter()
                    .map(|g| g[i * m * f..(i + 1) * m * f].to_vec())
                    .collect()
            })
            .collect()
    }

    /// The stream entering block 1 of every image and step, block 0's CLS FFN rows
    /// given as `rows0 = [images * steps, intermediate]`. Nothing below that row
    /// changes, so every step branches from the image's clean pass.
    fn branch_at_block_0(&self, images: &[&ImageContext], rows0: &[f32]) -> Vec<f32> {
        let per_image = rows0.len() / images.len();
        images
            .iter()
            .enumerate()
            .flat_map(|(i, img)| {
                self.vit
                    .branch(&img.clean, 0, &rows0[i * per_image..(i + 1) * per_image])
            })
            .collect()
    }

    /// Targets of `images`, each repeated once per integration step.
    pub(super) fn step_targets(&self, images: &[&ImageContext]) -> Vec<usize> {
        let m = self.rule.steps();
        images
            .iter()
            .flat_map(|img| std::iter::repeat_n(img.target, m))
            .collect()
    }

    /// `sum_k w_k g[k, n]` for one neuron.
    pub(super) fn mean_gradient(&self, grads: &[f32], n: usize, weights: &[f64]) -> f64 {
        let f = self.vit.config.intermediate;
        weights
            .iter()
            .enumerate()
            .map(|(k, w)| w * grads[k * f + n] as f64)
            .sum()
    }

    /// The clean row of `layer` with `neuron` (or every neuron) scaled to step `k`.
    pub(super) fn scaled_row(
        &self,
        clean: &CleanTrace,
        layer: usize,
        neuron: Option<usize>,
        k: usize,
        alphas: &[f32],
    ) -> Vec<f32> {
        let mut row = clean.cls_ffn[layer].clone();
        match neuron {
            Some(n) => row[n] = self.rule.scale(row[n], k, alphas),
            None => row
                .iter_mut()
                .for_each(|v| *v = self.rule.scale(*v, k, alphas)),
        }
        row
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
    /// Pass `l` scales the path neurons of the layers below `l` and all of layer `l`.
    /// From then on blocks `1..=l` see exactly what they see in every later pass, so
    /// their tapes and block `l`'s output are kept and the next pass runs forward
    /// from block `l + 1` only: the forward work of locating halves. The pass after
    /// the last layer, with only path neurons scaled, is the path's score.
    pub fn locate_and_score(&self, images: &[&ImageContext]) -> Vec<(Vec<usize>, PathScore)> {
        let vit = self.vit;
        let (alphas, weights) = self.rule.nodes();
        let (f, layers) = (vit.config.intermediate, vit.config.layers);
        let mut paths: Vec<Vec<usize>> = vec![Vec::new(); images.len()];
        // Block `j`'s scaled CLS FFN rows of every image and step: the path neuron only,
        // once layer `j` is located, else the whole row.
        let alphas = &alphas;
        let rows = |paths: &[Vec<usize>], j: usize| -> Vec<f32> {
            images
                .iter()
                .enumerate()
                .flat_map(|(i, img)| {
                    let neuron = paths[i].get(j).copied();
                    (0..alphas.len())
                        .flat_map(move |k| self.scaled_row(&img.clean, j, neuron, k, alphas))
                })
                .collect()
        };
        let targets = self.step_targets(images);
        let mut prefix: Vec<BlockTape> = Vec::new();
        let mut branch_point: Option<BranchPoint> = None;
        let mut scores = Vec::new();
        for l in 0..=layers {
            // The stream entering block max(l, 1), rows below l scaled as decided.
            let x = match branch_point.take() {
                Some(bp) => {
                    let mut x = bp.stream;
                    vit.set_cls_output(&mut x, l - 1, &bp.mid_cls, &rows(&paths, l - 1));
                    x
                }
                None => self.branch_at_block_0(images, &rows(&paths, 0)),
            };
            let from = l.max(1);
            let top_rows = (1..layers).contains(&l).then(|| rows(&paths, l));
            let mut actions = vec![RowAction::Keep; layers];
            if let Some(top_rows) = &top_rows {
                actions[l] = RowAction::Replace(top_rows);
            }
            let out = vit.forward(
                x,
                from,
                &actions,
                Keep {
                    tape: true,
                    residuals: false,
                    branch_point: (1..layers).contains(&l).then_some(l),
                },
            );
            let fresh = out.tape.expect("tape kept");
            let mut blocks = std::mem::take(&mut prefix);
            blocks.extend(fresh.blocks);
            let tape = Tape {
                from: 1,
                blocks,
                xhat_final: fresh.xhat_final,
                rstd_final: fresh.rstd_final,
                replaced: (0..layers).map(|j| j >= 1 && j <= l).collect(),
            };
            let grads = vit.backward(&tape, &out.logits, &targets, true);
            let mut per_layer =
                vec![vit.branch_gradient(0, grads.input.as_ref().expect("input gradient"))];
            per_layer.extend(grads.cls_ffn.into_iter().take(l.min(layers - 1)));
            let m_f = alphas.len() * f;
            for (i, img) in images.iter().enumerate() {
                let grad = |j: usize| &per_layer[j][i * m_f..(i + 1) * m_f];
                let path = &paths[i];
                let located = path.len().min(l);
                let a_path: Vec<f64> = (0..located)
                    .map(|j| img.clean.cls_ffn[j][path[j]] as f64)
                    .collect();
                let g_path: Vec<f64> = (0..located)
                    .map(|j| self.mean_gradient(grad(j), path[j], &weights))
                    .collect();
                if l == layers {
                    let score = self
                        .form
                        .combine(a_path.iter().copied(), g_path.iter().copied());
                    scores.push(PathScore {
                        score,
                        activation: a_path,
                        gradient: g_path,
                    });
                    continue;
                }
                let mut best = (f64::NEG_INFINITY, 0);
                for n in 0..f {
                    let a = a_path
                        .iter()
                        .copied()
                        .chain([img.clean.cls_ffn[l][n] as f64]);
                    let g =
                        g_path
                            .iter()
                            .copied()
                            .chain([self.mean_gradient(grad(l), n, &weights)]);
                    let score = self.form.combine(a, g);
                    if score > best.0 {
                        best = (score, n);
                    }
                }
                paths[i].push(best.1);
            }
            if l >= 1 {
                // Blocks 1..=l are settled: keep their tapes and block l's output.
                prefix = tape.blocks;
                prefix.truncate(l);
                branch_point = out.branch_point;
            }
        }
        paths.into_iter().zip(scores).collect()
    }

    /// JAS of whole paths, one per `(image, path)`, only the path neurons scaled.
    pub fn score(&self, items: &[(&ImageContext, &[usize])]) -> Vec<PathScore> {
        let (alphas, weights) = self.rule.nodes();
        let layers = self.vit.config.layers;
        let images: Vec<&ImageContext> = items.iter().map(|(img, _)| *img).collect();
        let grads = self.integrate(&images, |i, j, k| {
            self.scaled_row(&items[i].0.clean, j, Some(items[i].1[j]), k, &alphas)
        });
        items
            .iter()
            .enumerate()
            .map(|(i, (img, path))| {
                let activation: Vec<f64> = (0..layers)
                    .map(|j| img.clean.cls_ffn[j][path[j]] as f64)
                    .collect();
                let gradient: Vec<f64> = (0..layers)
                    .map(|j| self.mean_gradient(&grads[i][j], path[j], &weights))
                    .collect();
                let score = self
                    .form
                    .combine(activation.iter().copied(), gradient.iter().copied());
                PathScore {
                    score,
                    activation,
                    gradient,
                }
            })
            .collect()
    }
}
