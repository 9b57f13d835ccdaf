//! Class-level pruning: each class keeps the `top_k` neurons per layer its paths
//! use most (from [`super::stats`]) and loses a fraction of the other CLS FFN
//! neurons. The images that chose the neurons are not those evaluated: per class,
//! the first part of the images (in name order) builds, the rest (`holdout`)
//! evaluates. A control keeps `top_k` random neurons and prunes as many.

use super::stats::PathStats;
use super::{edited_outcomes, NeuronEdit, Outcome};
use crate::attribution::ImageContext;
use crate::attribution::Method;
use crate::data::{ImageEntry, ImageSet};
use crate::model::Vit;
use crate::numeric::SplitMix64;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Clone, Copy, Debug)]
pub struct PruneSettings {
    /// Neurons kept per layer for each class.
    pub top_k: usize,
    /// Share of the other neurons zeroed (chosen at random, seeded, when below 1).
    pub fraction: f64,
    pub seed: u64,
}

/// The images of a folder split per class: those that build the class paths
/// (their keys) and those that evaluate them.
pub struct Split<'a> {
    pub build: HashSet<String>,
    pub evaluate: Vec<&'a ImageEntry>,
}

/// Per class (label) present, the last `holdout` share of its images (in key order, at least one
/// when `holdout > 0`) evaluate and the others build; `holdout = 0` evaluates on
/// the building images themselves.
pub fn split(set: &ImageSet, holdout: f64) -> Split<'_> {
    let mut build = HashSet::new();
    let mut evaluate = Vec::new();
    let mut classes: Vec<usize> = set.entries.iter().filter_map(|e| e.label).collect();
    classes.sort_unstable();
    classes.dedup();
    for class in classes {
        let mut entries: Vec<&ImageEntry> = set
            .entries
            .iter()
            .filter(|e| e.label == Some(class))
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let held = if holdout > 0.0 {
            ((entries.len() as f64 * holdout).round() as usize).clamp(1, entries.len())
        } else {
            0
        };
        let (first, rest) = entries.split_at(entries.len() - held);
        build.extend(first.iter().map(|e| e.key.clone()));
        evaluate.extend(if held == 0 { first } else { rest });
    }
    Split { build, evaluate }
}

/// What one class keeps and loses, and the random control.
pub struct ClassPruning {
    pub class: usize,
    pub name: Option<String>,
    /// Per layer, the kept neurons (the class's most frequent).
    pub keep: Vec<Vec<usize>>,
    pub pruned: NeuronEdit,
    pub control_keep: Vec<Vec<usize>>,
    pub control_pruned: NeuronEdit,
}

/// The pruning of every class of `stats`.
pub fn plan(stats: &PathStats, settings: PruneSettings) -> Vec<ClassPruning> {
    stats
        .classes
        .iter()
        .map(|c| {
            let mut rng = SplitMix64::new(settings.seed ^ (c.class as u64).wrapping_mul(0x9E37));
            let keep = c.top(settings.top_k);
            let control_keep: Vec<Vec<usize>> = keep
                .iter()
                .map(|k| sample(&(0..stats.neurons).collect::<Vec<_>>(), k.len(), &mut rng))
                .collect();
            let mut zeroed = |keep: &[Vec<usize>]| -> NeuronEdit {
                keep.iter()
                    .map(|k| {
                        let others: Vec<usize> =
                            (0..stats.neurons).filter(|n| !k.contains(n)).collect();
                        let count = (others.len() as f64 * settings.fraction).round() as usize;
                        sample(&others, count, &mut rng)
                            .into_iter()
                            .map(|n| (n, 0.0))
                            .collect()
                    })
                    .collect()
            };
            let pruned = zeroed(&keep);
            let control_pruned = zeroed(&control_keep);
            ClassPruning {
                class: c.class,
                name: c.name.clone(),
                keep,
                pruned,
                control_keep,
                control_pruned,
            }
        })
        .collect()
}

/// `count` distinct items of `items`, uniformly (a partial Fisher-Yates shuffle).
fn sample(items: &[usize], count: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut items = items.to_vec();
    for i in 0..count.min(items.len()) {
        let j = i + rng.below(items.len() - i);
        items.swap(i, j);
    }
    items.truncate(count);
    items.sort_unstable();
    items
}

/// Mean target probability and top-1 accuracy of one group of images, without
/// pruning, with the class's pruning, and with the random control.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PruneResult {
    /// The class, or none for all classes together.
    pub class: Option<usize>,
    pub name: Option<String>,
    pub images: usize,
    pub prob_unpruned: f64,
    pub prob_pruned: f64,
    pub prob_control: f64,
    pub accuracy_unpruned: f64,
    pub accuracy_pruned: f64,
    pub accuracy_control: f64,
}

impl PruneResult {
    fn add(&mut self, [clean, pruned, control]: [Outcome; 3], label: usize) {
        let hit = |o: Outcome| f64::from(u8::from(o.predicted == label));
        self.images += 1;
        self.prob_unpruned += clean.prob as f64;
        self.prob_pruned += pruned.prob as f64;
        self.prob_control += control.prob as f64;
        self.accuracy_unpruned += hit(clean);
        self.accuracy_pruned += hit(pruned);
        self.accuracy_control += hit(control);
    }

    /// Sums to means.
    fn finish(mut self) -> PruneResult {
        let n = self.images.max(1) as f64;
        for v in [
            &mut self.prob_unpruned,
            &mut self.prob_pruned,
            &mut self.prob_control,
            &mut self.accuracy_unpruned,
            &mut self.accuracy_pruned,
            &mut self.accuracy_control,
        ] {
            *v /= n;
        }
        self
    }
}

/// Accumulates evaluated images into per-class and overall results.
pub struct PruneTally {
    classes: Vec<PruneResult>,
    overall: PruneResult,
}

impl PruneTally {
    pub fn new(plans: &[ClassPruning]) -> PruneTally {
        PruneTally {
            classes: plans
                .iter()
                .map(|p| PruneResult {
                    class: Some(p.class),
                    name: p.name.clone(),
                    ..Default::default()
                })
                .collect(),
            overall: PruneResult::default(),
        }
    }

    /// Evaluates one image (target = its label) under its class's pruning; images of
    /// a class without a plan are not counted (returns false).
    pub fn evaluate(&mut self, vit: &Vit, plans: &[ClassPruning], image: &ImageContext) -> bool {
        let Some(i) = plans.iter().position(|p| p.class == image.target) else {
            return false;
        };
        let edited = edited_outcomes(vit, image, &[&plans[i].pruned, &plans[i].control_pruned]);
        let outcomes = [Outcome::clean(vit, image), edited[0], edited[1]];
        self.classes[i].add(outcomes, image.target);
        self.overall.add(outcomes, image.target);
        true
    }

    pub fn finish(self) -> (Vec<PruneResult>, PruneResult) {
        (
            self.classes.into_iter().map(PruneResult::finish).collect(),
            self.overall.finish(),
        )
    }
}

/// What `neuronpath prune` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PruneReport {
    pub method: Method,
    pub top_k: usize,
    pub fraction: f64,
    pub holdout: f64,
    pub seed: u64,
    /// Paths that built the class neuron sets, and images evaluated.
    pub build_paths: usize,
    pub evaluated_images: usize,
    pub classes: Vec<PruneResult>,
    pub overall: PruneResult,
}
