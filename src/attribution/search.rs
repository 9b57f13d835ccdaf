//! Layer-progressive path search: greedy (the paper's), top-K (the reference's
//! `topk/path/joint_attr.py`) and beam search, and an exhaustive search for small
//! models (the exact best path, to measure how far the others are from it).
//!
//! At layer `l` every partial path is extended: its layers below `l` scaled by
//! their path neurons and layer `l` scaled whole, one batched pass scores every
//! candidate neuron of the layer as the JAS of the partial path plus it
//! ([`crate::model::Progression`]). Greedy keeps the best candidate; top-K keeps the
//! K best as one layer of the path (all scaled together in the later passes); beam
//! search keeps the `beam` best `(partial path, candidate)` pairs of an image. The
//! pass after the last layer, only path neurons scaled, scores the full paths.

use super::context::ImageContext;
use super::jas::{Attributor, PathScore};
use super::path::NeuronPath;
use crate::model::{Activation, CleanTrace, Gradients, Progression};
use anyhow::{bail, Result};

/// How the search explores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Search {
    /// Neurons chosen per layer (a top-K path when above 1).
    pub top_k: usize,
    /// Partial paths kept at every layer (1: the greedy search).
    pub beam: usize,
    /// Full paths returned per image, best first (at most `beam`).
    pub paths: usize,
}

impl Default for Search {
    fn default() -> Search {
        Search::GREEDY
    }
}

impl Search {
    /// The paper's search: one neuron per layer, the best at each.
    pub const GREEDY: Search = Search {
        top_k: 1,
        beam: 1,
        paths: 1,
    };
    /// The widest beam accepted (every beam is a batch of passes of its own).
    pub const MAX_BEAM: usize = 256;

    /// Refuses settings that do not make sense for a model of `neurons` per layer.
    pub fn check(&self, neurons: usize) -> Result<()> {
        if !(1..=neurons).contains(&self.top_k) {
            bail!(
                "--top-k {}: must be 1 to {neurons} (the model's neurons per layer)",
                self.top_k
            );
        }
        if !(1..=Search::MAX_BEAM).contains(&self.beam) {
            bail!("--beam {}: must be 1 to {}", self.beam, Search::MAX_BEAM);
        }
        if self.top_k > 1 && self.beam > 1 {
            bail!("--beam {} with --top-k {}: beam search keeps one-neuron paths; use one or the other", self.beam, self.top_k);
        }
        if !(1..=self.beam).contains(&self.paths) {
            bail!(
                "--paths-per-image {}: must be 1 to --beam ({})",
                self.paths,
                self.beam
            );
        }
        Ok(())
    }
}

/// The `k` largest of `values`, largest first; ties keep the lower index first.
pub fn top_indices(values: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.truncate(k);
    order
}

/// Partial paths, image-major: `width` per image, each per layer its neurons.
struct Beams {
    paths: Vec<Vec<Vec<usize>>>,
    width: usize,
}

impl Attributor<'_> {
    /// The greedy paths (one neuron per layer) of every image.
    pub fn locate(&self, images: &[&ImageContext]) -> Vec<NeuronPath> {
        self.paths(super::Method::Jas, images, 0, Search::GREEDY)
    }

    /// The paths `search` finds for every image, best first, each with its JAS (as
    /// [`Attributor::score`] gives it, without a pass of its own). A setting of 0 is
    /// taken as 1 ([`Search::check`] refuses it before).
    pub fn locate_and_score(
        &self,
        images: &[&ImageContext],
        search: Search,
    ) -> Vec<Vec<(NeuronPath, PathScore)>> {
        if images.is_empty() {
            return Vec::new();
        }
        if self.vit.unit == Activation::AttnZ {
            let found = self.locate_heads(images);
            return found
                .into_iter()
                .map(|(path, score)| vec![(path.into(), score)])
                .collect();
        }
        let search = Search {
            top_k: search.top_k.max(1),
            beam: search.beam.max(1),
            paths: search.paths.max(1),
        };
        let layers = self.vit.config.layers;
        let cleans: Vec<&CleanTrace> = images.iter().map(|img| &img.clean).collect();
        let mut progression = self.vit.progression(&cleans);
        let mut beams = Beams {
            paths: vec![Vec::new(); images.len()],
            width: 1,
        };
        for l in 0..layers {
            let grads = self.pass(&mut progression, images, &beams, l);
            let parents = self.extend(images, &mut beams, &grads, l, search);
            progression.select(&parents, self.rule.steps());
        }
        let grads = self.pass(&mut progression, images, &beams, layers);
        let (_, weights) = self.rule.nodes();
        let mut scored = beams.paths.into_iter().enumerate().map(|(s, path)| {
            let img = images[s / beams.width];
            let score = self.path_score(self.path_terms(img, &path, &grads, s, &weights));
            (NeuronPath(path), score)
        });
        (0..images.len())
            .map(|_| {
                let mut found: Vec<_> = scored.by_ref().take(beams.width).collect();
                found.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
                found.truncate(search.paths);
                found
            })
            .collect()
    }

    /// Progressive pass `l` over every partial path: layer `l - 1` settles to its
    /// path neurons, layer `l` (when not past the last) is scaled whole.
    fn pass(
        &self,
        progression: &mut Progression,
        images: &[&ImageContext],
        beams: &Beams,
        l: usize,
    ) -> Gradients {
        let (alphas, _) = self.rule.nodes();
        let w = beams.width;
        let settled = match l {
            0 => Vec::new(),
            _ => self.layer_rows(images, w, l - 1, |s| Some(&beams.paths[s][l - 1]), &alphas),
        };
        let top = match l < self.vit.config.layers {
            true => self.layer_rows(images, w, l, |_| None, &alphas),
            false => Vec::new(),
        };
        progression.pass(&settled, &top, &self.step_targets(images, w))
    }

    /// Extends the partial paths by layer `l` from pass `l`'s gradients; returns, for
    /// each new partial path, the index of the one it extends.
    fn extend(
        &self,
        images: &[&ImageContext],
        beams: &mut Beams,
        grads: &Gradients,
        l: usize,
        search: Search,
    ) -> Vec<usize> {
        let (_, weights) = self.rule.nodes();
        let w = beams.width;
        // Per image, every (score, parent, neurons) the partial paths may become.
        let mut options: Vec<Vec<(f64, usize, Vec<usize>)>> = vec![Vec::new(); images.len()];
        for (s, path) in beams.paths.iter().enumerate() {
            let img = images[s / w];
            let sums = self.token_sums(&self.path_terms(img, path, grads, s, &weights));
            let g = self.sequence_grads(grads, l, s);
            let scores = self.candidate_scores(img, l, &sums, g, &weights);
            let choices = &mut options[s / w];
            match search.top_k {
                1 => choices.extend(scores.iter().enumerate().map(|(n, &v)| (v, s, vec![n]))),
                k => choices.push((0.0, s, top_indices(&scores, k))),
            }
        }
        let mut parents = Vec::new();
        let mut paths = Vec::new();
        for mut choices in options {
            // A stable sort: ties keep the lower parent, then the lower neuron.
            choices.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (_, parent, neurons) in choices.into_iter().take(search.beam) {
                let mut path = beams.paths[parent].clone();
                path.push(neurons);
                paths.push(path);
                parents.push(parent);
            }
        }
        beams.width = paths.len() / images.len();
        beams.paths = paths;
        parents
    }

    /// The JAS of every one-neuron-per-layer path of `image`, in the order of
    /// [`Attributor::nth_path`], `chunk` paths per batch; refused above 10^8 paths.
    pub fn all_path_scores(&self, image: &ImageContext, chunk: usize) -> Result<Vec<f64>> {
        let (f, layers) = (self.vit.config.intermediate, self.vit.config.layers);
        let total = (f as u64)
            .checked_pow(layers as u32)
            .filter(|&t| t <= 100_000_000);
        let Some(total) = total else {
            bail!("{f}^{layers} paths: too many for an exhaustive search");
        };
        let mut scores = Vec::with_capacity(total as usize);
        for start in (0..total as usize).step_by(chunk.max(1)) {
            let end = (total as usize).min(start + chunk.max(1));
            let paths: Vec<NeuronPath> = (start..end).map(|i| self.nth_path(i)).collect();
            let items: Vec<(&ImageContext, &NeuronPath)> =
                paths.iter().map(|p| (image, p)).collect();
            scores.extend(self.score(&items).into_iter().map(|s| s.score));
        }
        Ok(scores)
    }

    /// Path `index` of the exhaustive order: its neurons are the digits of `index`
    /// in base `neurons`, the first layer most significant.
    pub fn nth_path(&self, mut index: usize) -> NeuronPath {
        let f = self.vit.config.intermediate;
        let mut path = vec![0; self.vit.config.layers];
        for n in path.iter_mut().rev() {
            *n = index % f;
            index /= f;
        }
        path.into()
    }

    /// The exact best one-neuron-per-layer path of `image` and its JAS (the first
    /// of equals), by [`Attributor::all_path_scores`].
    pub fn exhaustive(&self, image: &ImageContext, chunk: usize) -> Result<(NeuronPath, f64)> {
        let scores = self.all_path_scores(image, chunk)?;
        let best = top_indices(&scores, 1);
        match best.first() {
            Some(&i) => Ok((self.nth_path(i), scores[i])),
            None => bail!("the model has no neurons"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_indices_are_largest_first_and_ties_keep_order() {
        assert_eq!(top_indices(&[1.0, 3.0, 2.0, 3.0], 3), vec![1, 3, 2]);
        assert_eq!(top_indices(&[1.0], 1), vec![0]);
    }

    #[test]
    fn settings_are_checked() {
        assert!(Search::GREEDY.check(8).is_ok());
        let bad = [
            (0, 1, 1),
            (9, 1, 1),
            (1, 0, 1),
            (1, 257, 1),
            (2, 2, 1),
            (1, 4, 5),
            (1, 4, 0),
        ];
        for (top_k, beam, paths) in bad {
            let search = Search { top_k, beam, paths };
            assert!(search.check(8).is_err(), "{search:?}");
        }
    }
}
