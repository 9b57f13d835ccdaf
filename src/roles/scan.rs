//! The streaming scan: each image's activation of every requested neuron, from
//! one forward pass, offered to that neuron's top-K and added to its class sums.

use super::profile;
use super::select::Neuron;
use super::topk::{Hit, TopK};
use crate::model::{Activations, Readout, Tokens, Vit};
use crate::names::Named;
use serde::{Deserialize, Serialize};

/// What an image's activation of a neuron is, for ranking and the class profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rank {
    /// The neuron at the CLS token.
    Cls,
    /// The largest over the patch tokens.
    PatchMax,
    /// The mean over the patch tokens (MAE's neuron, as the paper's code).
    PatchMean,
}

crate::names::display_by_name!(Rank);

impl Named for Rank {
    const ALL: &'static [Rank] = &[Rank::Cls, Rank::PatchMax, Rank::PatchMean];

    fn name(self) -> &'static str {
        match self {
            Rank::Cls => "cls",
            Rank::PatchMax => "patch-max",
            Rank::PatchMean => "patch-mean",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Rank::Cls => "the activation at the CLS token",
            Rank::PatchMax => "the largest activation over the patch tokens",
            Rank::PatchMean => "the mean over the patch tokens (MAE's neuron, as the paper's code)",
        }
    }
}

impl Rank {
    /// The model's own: the mean over the patches where the family's neuron spans
    /// them (MAE), else the CLS token.
    pub fn default_for(vit: &Vit) -> Rank {
        match vit.config.family.neuron_tokens() {
            Tokens::Patches => Rank::PatchMean,
            _ => Rank::Cls,
        }
    }

    /// The tokens a scan reads.
    pub fn tokens(self) -> Tokens {
        match self {
            Rank::Cls => Tokens::Cls,
            Rank::PatchMax | Rank::PatchMean => Tokens::Patches,
        }
    }

    /// One image's activation from its values at [`Rank::tokens`], `width` apart.
    fn of(self, rows: &[f32], width: usize, neuron: usize) -> f32 {
        let mut column = rows.chunks_exact(width).map(|row| row[neuron]);
        match self {
            Rank::Cls => column.next().unwrap_or(0.0),
            Rank::PatchMax => column.fold(f32::NEG_INFINITY, f32::max),
            Rank::PatchMean => {
                let n = rows.len() / width;
                column.sum::<f32>() / n as f32
            }
        }
    }
}

/// The tokens whose write the readout reads directly: the patches for a patch
/// mean (MAE), else the CLS token.
pub fn direct_tokens(vit: &Vit) -> Tokens {
    match vit.config.family.readout {
        Readout::MeanPatches => Tokens::Patches,
        _ => Tokens::Cls,
    }
}

/// An image of a batch: its place in the batch, its key and label.
pub struct Seen<'a> {
    pub at: usize,
    pub key: &'a str,
    pub label: Option<usize>,
}

/// A scan so far: everything needed to go on with it, or to merge it with a scan
/// of other images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scan {
    pub neurons: Vec<Neuron>,
    pub rank: Rank,
    /// Exemplars kept per neuron.
    pub top: usize,
    /// Images scanned, failed ones not counted.
    pub images: usize,
    /// Keys of the images that could not be read or run.
    pub failed: Vec<String>,
    /// Per neuron, its best images so far.
    pub hits: Vec<TopK>,
    /// Per neuron, per class: the activations' fixed-point sum (see `profile`).
    pub class_sums: Vec<Vec<i64>>,
    /// Per class: the labelled images scanned.
    pub class_counts: Vec<u64>,
}

impl Scan {
    pub fn new(neurons: Vec<Neuron>, rank: Rank, top: usize, classes: usize) -> Scan {
        Scan {
            hits: vec![TopK::default(); neurons.len()],
            class_sums: vec![vec![0; classes]; neurons.len()],
            class_counts: vec![0; classes],
            neurons,
            rank,
            top,
            images: 0,
            failed: Vec::new(),
        }
    }

    /// Adds a batch's pass (`vit.activations` with the neurons at
    /// [`Rank::tokens`]) for the images `seen`.
    pub fn add(&mut self, vit: &Vit, pass: &Activations, seen: &[Seen]) {
        let width = vit.config.intermediate;
        let per_image = vit.config.rows(self.rank.tokens()).len() * width;
        for image in seen {
            let i = image.at;
            for (k, neuron) in self.neurons.iter().enumerate() {
                let rows = &pass.neurons[neuron.layer][i * per_image..(i + 1) * per_image];
                let score = self.rank.of(rows, width, neuron.neuron);
                if self.hits[k].admits(self.top, score) {
                    let hit = Hit {
                        score,
                        image: image.key.to_string(),
                    };
                    self.hits[k].offer(self.top, hit);
                }
                if let Some(label) = image.label {
                    let sum = &mut self.class_sums[k][label];
                    *sum = sum.saturating_add(profile::fixed(score));
                }
            }
            if let Some(label) = image.label {
                self.class_counts[label] += 1;
            }
        }
        self.images += seen.len();
    }
}
