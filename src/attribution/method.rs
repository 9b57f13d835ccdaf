//! The path-finding methods by name, and finding plus scoring a batch of images
//! with several of them, every path on the same JAS scale.

use super::baselines::{activation_path, random_path};
use super::context::ImageContext;
use super::heads::largest_heads;
use super::jas::{Attributor, PathScore};
use crate::model::Activation;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Method {
    /// Layer-progressive Joint Attribution Score search (the paper's method).
    Jas,
    /// Largest clean CLS activation per layer (the paper's baseline).
    Activation,
    /// Influence patterns (Lu et al. 2021): input interpolated from zero, argmax of the
    /// mean gradient per layer, as the reference code runs them.
    Influence,
    /// Per-layer integrated gradients (knowledge neurons): argmax per layer.
    Ig,
    /// One uniformly random neuron per layer (`--seed`).
    Random,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Jas,
        Method::Activation,
        Method::Influence,
        Method::Ig,
        Method::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Jas => "jas",
            Method::Activation => "activation",
            Method::Influence => "influence",
            Method::Ig => "ig",
            Method::Random => "random",
        }
    }
}

/// A method's path for one image of a batch, and its JAS.
pub struct FoundPath {
    /// Index of the image in the batch.
    pub image: usize,
    pub method: Method,
    pub path: Vec<usize>,
    pub score: PathScore,
}

impl Attributor<'_> {
    /// Whether `method` finds paths of the model's unit (heads: jas, activation, random).
    pub fn supports(&self, method: Method) -> bool {
        self.vit.unit == Activation::MlpPost
            || matches!(method, Method::Jas | Method::Activation | Method::Random)
    }

    /// Paths of `method` for every image.
    pub fn paths(&self, method: Method, images: &[&ImageContext], seed: u64) -> Vec<Vec<usize>> {
        let heads = self.vit.unit == Activation::AttnZ;
        match method {
            Method::Jas => self.locate(images),
            Method::Activation if heads => images
                .iter()
                .map(|img| largest_heads(self.vit, img))
                .collect(),
            Method::Activation => images
                .iter()
                .map(|img| activation_path(self.vit, img))
                .collect(),
            Method::Influence => self.influence_paths(images),
            Method::Ig => self.ig_paths(images),
            Method::Random => images
                .iter()
                .map(|img| random_path(self.vit, img, seed))
                .collect(),
        }
    }

    /// Finds the path of every `(image, method)` that `wanted` accepts and scores them
    /// all in one batch. Each method runs only on the images that need it.
    pub fn find_and_score(
        &self,
        images: &[&ImageContext],
        methods: &[Method],
        seed: u64,
        wanted: impl Fn(usize, Method) -> bool,
    ) -> Vec<FoundPath> {
        let mut scored: Vec<FoundPath> = Vec::new();
        let mut unscored: Vec<(usize, Method, Vec<usize>)> = Vec::new();
        for &method in methods {
            let which: Vec<usize> = (0..images.len()).filter(|&i| wanted(i, method)).collect();
            if which.is_empty() {
                continue;
            }
            let subset: Vec<&ImageContext> = which.iter().map(|&i| images[i]).collect();
            if method == Method::Jas {
                // Locating ends with the path's score.
                for (image, (path, score)) in which.into_iter().zip(self.locate_and_score(&subset))
                {
                    scored.push(FoundPath {
                        image,
                        method,
                        path,
                        score,
                    });
                }
                continue;
            }
            for (i, path) in which.into_iter().zip(self.paths(method, &subset, seed)) {
                unscored.push((i, method, path));
            }
        }
        let items: Vec<(&ImageContext, &[usize])> = unscored
            .iter()
            .map(|(i, _, path)| (images[*i], path.as_slice()))
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
                    path,
                    score,
                }),
        );
        scored
    }
}
