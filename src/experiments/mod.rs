//! The paper's experiments on found paths: what happens to the prediction when
//! path neurons are removed or enhanced (`manipulate`), which neurons each class's
//! paths prefer (`stats`), and how well a class keeps its accuracy when only its
//! preferred neurons survive (`prune`).

pub mod manipulate;
pub mod prune;
pub mod stats;

use crate::attribution::ImageContext;
use crate::model::{Action, Intervention, Vit};
use crate::numeric::{argmax, softmax};

/// A multiplicative edit of neurons: per layer, `(neuron, factor)` pairs.
pub type NeuronEdit = Vec<Vec<(usize, f32)>>;

/// The prediction of one image under an edit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// Probability of the image's target class.
    pub prob: f32,
    pub predicted: usize,
}

impl Outcome {
    /// The prediction of the unedited model.
    pub fn clean(vit: &Vit, image: &ImageContext) -> Outcome {
        outcome(
            &softmax(&image.clean.logits, vit.config.classes),
            image.target,
        )
    }
}

fn outcome(probs: &[f32], target: usize) -> Outcome {
    Outcome {
        prob: probs[target],
        predicted: argmax(probs),
    }
}

/// Runs `image` once per edit, all edits as one batch; every edit acts at the
/// neuron site of every layer it names (every token of it), and the layers above
/// follow.
pub fn edited_outcomes(vit: &Vit, image: &ImageContext, edits: &[&NeuronEdit]) -> Vec<Outcome> {
    let layers = vit.config.layers;
    let per_layer: Vec<Vec<Vec<(usize, f32)>>> = (0..layers)
        .map(|l| edits.iter().map(|e| e[l].clone()).collect())
        .collect();
    let interventions: Vec<Intervention> = per_layer
        .iter()
        .enumerate()
        .map(|(l, e)| Intervention {
            site: vit.neuron_site(l),
            action: Action::Scale(e),
        })
        .collect();
    let embedded = vit.embed(&image.pixels);
    let x: Vec<f32> = edits
        .iter()
        .flat_map(|_| embedded.iter().copied())
        .collect();
    let logits = vit.logits(x, &interventions);
    let classes = vit.config.classes;
    softmax(&logits, classes)
        .chunks_exact(classes)
        .map(|p| outcome(p, image.target))
        .collect()
}
