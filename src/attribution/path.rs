//! A neuron path: per layer, the neurons chosen there, input to output. A plain
//! path has one neuron per layer; a top-K path has K, in the order they were found
//! (descending score, as `torch.topk` lists them in the reference's top-K program).
//!
//! In JSON a plain path is a flat list (`[409, 334, ...]`, as records always were)
//! and a top-K path a list of per-layer lists (`[[409, 413, 278], ...]`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PathForm", into = "PathForm")]
pub struct NeuronPath(pub Vec<Vec<usize>>);

/// How a path is written: flat when every layer has one neuron.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PathForm {
    Single(Vec<usize>),
    PerLayer(Vec<Vec<usize>>),
}

impl TryFrom<PathForm> for NeuronPath {
    type Error = String;

    /// Refuses a layer without neurons.
    fn try_from(form: PathForm) -> Result<NeuronPath, String> {
        match form {
            PathForm::Single(path) => Ok(path.into()),
            PathForm::PerLayer(layers) => match layers.iter().position(|l| l.is_empty()) {
                Some(l) => Err(format!("the path has no neuron at layer {l}")),
                None => Ok(NeuronPath(layers)),
            },
        }
    }
}

impl From<NeuronPath> for PathForm {
    fn from(path: NeuronPath) -> PathForm {
        match path.single() {
            Some(single) => PathForm::Single(single),
            None => PathForm::PerLayer(path.0),
        }
    }
}

impl From<Vec<usize>> for NeuronPath {
    /// A plain path: one neuron per layer.
    fn from(path: Vec<usize>) -> NeuronPath {
        NeuronPath(path.into_iter().map(|n| vec![n]).collect())
    }
}

impl NeuronPath {
    pub fn layers(&self) -> usize {
        self.0.len()
    }

    /// The neurons of `layer`.
    pub fn at(&self, layer: usize) -> &[usize] {
        &self.0[layer]
    }

    /// The one neuron per layer of a plain path; none for a top-K path.
    pub fn single(&self) -> Option<Vec<usize>> {
        self.0
            .iter()
            .map(|l| match l.as_slice() {
                [n] => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// Every `(layer, neuron)` of the path.
    pub fn neurons(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(l, ns)| ns.iter().map(move |&n| (l, n)))
    }
}

impl PartialEq<Vec<usize>> for NeuronPath {
    /// A plain path equals its list of neurons.
    fn eq(&self, other: &Vec<usize>) -> bool {
        self.single().as_ref() == Some(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_stay_flat_and_top_k_paths_nest() {
        let plain = NeuronPath::from(vec![3, 1, 4]);
        assert_eq!(serde_json::to_string(&plain).unwrap(), "[3,1,4]");
        assert_eq!(
            serde_json::from_str::<NeuronPath>("[3,1,4]").unwrap(),
            plain
        );
        assert!(plain == vec![3, 1, 4]);
        let top = NeuronPath(vec![vec![3, 1], vec![4, 1]]);
        assert_eq!(serde_json::to_string(&top).unwrap(), "[[3,1],[4,1]]");
        assert_eq!(
            serde_json::from_str::<NeuronPath>("[[3,1],[4,1]]").unwrap(),
            top
        );
        assert!(top != vec![3, 4]);
        assert!(serde_json::from_str::<NeuronPath>("[[1],2]").is_err());
        assert!(serde_json::from_str::<NeuronPath>("[[1],[]]").is_err());
    }
}
