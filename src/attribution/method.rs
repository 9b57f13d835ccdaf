//! The path-finding methods by name, and finding plus scoring a batch of images
//! with several of them, every path on the same JAS scale.

use super::baselines::{activation_path, random_path};
use super::context::ImageContext;
use super::heads::largest_heads;
use super::jas::{Attributor, PathScore};
use super::path::NeuronPath;
use super::search::Search;
use crate::model::Activation;
use crate::names::Named;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Layer-progressive Joint Attribution Score search (the paper's method).
    Jas,
    /// Largest clean CLS activation per layer (the paper's baseline).
    Activation,
    /// Influence patterns (Lu et al. 2021), as the reference code runs them.
    Influence,
    /// Per-layer integrated gradients (knowledge neurons).
    Ig,
    /// One uniformly random neuron per layer.
    Random,
}

crate::names::display_by_name!(Method);

impl Named for Method {
    const ALL: &'static [Method] = &[
        Method::Jas,
        Method::Activation,
        Method::Influence,
        Method::Ig,
        Method::Random,
    ];

    fn name(self) -> &'static str {
        match self {
            Method::Jas => "jas",
            Method::Activation => "activation",
            Method::Influence => "influence",
            Method::Ig => "ig",
            Method::Random => "random",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Method::Jas => "layer-progressive Joint Attribution Score search (the paper's method)",
            Method::Activation => "largest clean activation per layer (the paper's baseline)",
            Method::Influence => "influence patterns (Lu et al. 2021): input interpolated from zero, argmax of the mean gradient per layer, as the reference code runs them",
            Method::Ig => "per-layer integrated gradients (knowledge neurons): argmax per layer",
            Method::Random => "one uniformly random neuron per layer (--seed)",
        }
    }
}

/// A method's path for one image of a batch, and its JAS.
pub struct FoundPath {
    /// Index of the image in the batch.
    pub image: usize,
    pub method: Method,
    /// Among the image's paths of this method, best first (beam search's
    /// `--paths-per-image`; otherwise 0).
    pub rank: usize,
    pub path: NeuronPath,
    pub score: PathScore,
}

impl Attributor<'_> {
    /// Whether `method` finds paths of the model's unit (heads: jas, activation, random).
    pub fn supports(&self, method: Method) -> bool {
        self.vit.unit == Activation::MlpPost
            || matches!(method, Method::Jas | Method::Activation | Method::Random)
    }

    /// The best path of `method` for every image (`jas` searching as `search` says,
    /// `activation` with its `top_k`).
    pub fn paths(
        &self,
        method: Method,
        images: &[&ImageContext],
        seed: u64,
        search: Search,
    ) -> Vec<NeuronPath> {
        match method {
            Method::Jas => self
                .locate_and_score(images, search)
                .into_iter()
                .map(|mut found| found.swap_remove(0).0)
                .collect(),
            Method::Activation if self.vit.unit == Activation::AttnZ => images
                .iter()
                .map(|img| largest_heads(self.vit, img).into())
                .collect(),
            Method::Activation => images
                .iter()
                .map(|img| activation_path(self.vit, img, search.top_k))
                .collect(),
            Method::Influence => plain(self.influence_paths(images)),
            Method::Ig => plain(self.ig_paths(images)),
            Method::Random => images
                .iter()
                .map(|img| random_path(self.vit, img, seed).into())
                .collect(),
        }
    }

    /// [`Attributor::find_and_score_with`] the paper's greedy search.
    pub fn find_and_score(
        &self,
        images: &[&ImageContext],
        methods: &[Method],
        seed: u64,
        wanted: impl Fn(usize, Method) -> bool,
    ) -> Vec<FoundPath> {
        self.find_and_score_with(images, methods, seed, Search::GREEDY, wanted)
    }

    /// Finds the paths of every `(image, method)` that `wanted` accepts and scores
    /// them all in one batch. Each method runs only on the images that need it;
    /// `search` says how `jas` searches, and its `top_k` applies to `activation` too.
    pub fn find_and_score_with(
        &self,
        images: &[&ImageContext],
        methods: &[Method],
        seed: u64,
        search: Search,
        wanted: impl Fn(usize, Method) -> bool,
    ) -> Vec<FoundPath> {
        let mut scored: Vec<FoundPath> = Vec::new();
        let mut unscored: Vec<(usize, Method, NeuronPath)> = Vec::new();
        for &method in methods {
            let which: Vec<usize> = (0..images.len()).filter(|&i| wanted(i, method)).collect();
            if which.is_empty() {
                continue;
            }
            let subset: Vec<&ImageContext> = which.iter().map(|&i| images[i]).collect();
            if method == Method::Jas {
                // Locating ends with the paths' scores.
                for (image, found) in which
                    .into_iter()
                    .zip(self.locate_and_score(&subset, search))
                {
                    scored.extend(found.into_iter().enumerate().map(|(rank, (path, score))| {
                        FoundPath {
                            image,
                            method,
                            rank,
                            path,
                            score,
                        }
                    }));
                }
                continue;
            }
            for (i, path) in which
                .into_iter()
                .zip(self.paths(method, &subset, seed, search))
            {
                unscored.push((i, method, path));
            }
        }
        let items: Vec<(&ImageContext, &NeuronPath)> = unscored
            .iter()
            .map(|(i, _, path)| (images[*i], path))
            .collect();
        let scores = if items.is_empty() {
            Vec::new()
        } else {
            self.score(&items)
        };
        scored.extend(
            unscored
                .into_iter()
                .zip(scores)
                .map(|((image, method, path), score)| FoundPath {
                    image,
                    method,
                    rank: 0,
                    path,
                    score,
                }),
        );
        scored
    }
}

/// Plain paths (one neuron per layer) as [`NeuronPath`]s.
fn plain(paths: Vec<Vec<usize>>) -> Vec<NeuronPath> {
    paths.into_iter().map(NeuronPath::from).collect()
}
