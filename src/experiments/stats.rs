//! Class-level statistics of paths: how often each neuron lies on the paths of a
//! class (the paper's "preferred path" picture), each class's most frequent
//! neurons, how concentrated its paths are, and which classes share neurons.

use crate::attribution::Method;
use crate::record::PathRecord;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Statistics of one method's paths.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathStats {
    pub method: Method,
    pub layers: usize,
    /// Neurons per layer (the CLS FFN width).
    pub neurons: usize,
    pub paths: usize,
    /// Mean and median JAS of the paths.
    pub mean_score: f64,
    pub median_score: f64,
    pub classes: Vec<ClassStats>,
    /// Cosine similarity of the classes' frequency maps, `[class][class]` in the
    /// order of `classes`.
    pub similarity: Vec<Vec<f64>>,
}

/// The paths of the images of one class (the class they explain).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassStats {
    pub class: usize,
    pub name: Option<String>,
    pub images: usize,
    /// Per layer: `(neuron, count)` of every neuron on some path of the class
    /// (each of a top-K path's K neurons counted), most frequent first (ties:
    /// lower index first).
    pub frequency: Vec<Vec<(usize, usize)>>,
    /// The most frequent neuron of each layer.
    pub class_path: Vec<usize>,
    /// Per layer: the share of the class's paths through its most frequent neuron.
    pub concentration: Vec<f64>,
    /// The other class with the most and the least similar frequency map
    /// (class indices, not positions in `classes`).
    pub most_similar: Option<usize>,
    pub least_similar: Option<usize>,
}

impl ClassStats {
    /// The `k` most frequent neurons of each layer (fewer where fewer occur).
    pub fn top(&self, k: usize) -> Vec<Vec<usize>> {
        self.frequency
            .iter()
            .map(|layer| layer.iter().take(k).map(|&(n, _)| n).collect())
            .collect()
    }
}

/// All methods' statistics, as `neuronpath stats` writes them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsFile {
    pub methods: Vec<PathStats>,
    /// The model the paths were found on (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_fingerprint: Option<String>,
}

/// Statistics of the paths of `method` among `records`, grouped by target class.
pub fn path_stats(records: &[PathRecord], method: Method) -> Result<PathStats> {
    let records: Vec<&PathRecord> = records.iter().filter(|r| r.method == method).collect();
    let Some(first) = records.first() else {
        bail!("no paths of method {method}");
    };
    let (layers, neurons) = (first.path.layers(), first.neurons);
    if let Some(r) = records
        .iter()
        .find(|r| r.path.layers() != layers || r.neurons != neurons)
    {
        bail!(
            "{} ({method}): a path of {} layers x {} neurons, but {} has {layers} x {neurons}: \
             the file mixes models, or one was edited",
            r.image,
            r.path.layers(),
            r.neurons,
            first.image
        );
    }
    if let Some((r, (l, n))) = records.iter().find_map(|r| {
        r.path
            .neurons()
            .find(|&(_, n)| n >= neurons)
            .map(|x| (r, x))
    }) {
        bail!(
            "{} ({method}): neuron {n} at layer {l} is out of range: layers have {neurons} neurons",
            r.image
        );
    }
    let scores: Vec<f64> = records.iter().map(|r| r.score).collect();
    let (mean_score, median_score) = (mean(&scores), median(&scores));
    let mut by_class: BTreeMap<usize, Vec<&PathRecord>> = BTreeMap::new();
    for r in &records {
        by_class.entry(r.target).or_default().push(r);
    }
    let mut classes: Vec<ClassStats> = by_class
        .into_iter()
        .map(|(class, group)| class_stats(class, &group, layers))
        .collect();
    let similarity: Vec<Vec<f64>> = classes
        .iter()
        .map(|a| classes.iter().map(|b| cosine(a, b)).collect())
        .collect();
    for i in 0..classes.len() {
        let others = || (0..classes.len()).filter(move |&j| j != i);
        let by_similarity = |a: &usize, b: &usize| similarity[i][*a].total_cmp(&similarity[i][*b]);
        // `max_by` keeps the last of equals: reversed, ties go to the first class.
        let most = others().rev().max_by(by_similarity);
        let least = others().min_by(by_similarity);
        classes[i].most_similar = most.map(|j| classes[j].class);
        classes[i].least_similar = least.map(|j| classes[j].class);
    }
    Ok(PathStats {
        method,
        layers,
        neurons,
        paths: records.len(),
        mean_score,
        median_score,
        classes,
        similarity,
    })
}

/// Statistics of every method in `records`, in order of first appearance.
pub fn all_stats(records: &[PathRecord]) -> Result<StatsFile> {
    let mut methods: Vec<Method> = Vec::new();
    for r in records {
        if !methods.contains(&r.method) {
            methods.push(r.method);
        }
    }
    Ok(StatsFile {
        methods: methods
            .into_iter()
            .map(|m| path_stats(records, m))
            .collect::<Result<_>>()?,
        model_fingerprint: records.iter().find_map(|r| r.model_fingerprint.clone()),
    })
}

fn class_stats(class: usize, group: &[&PathRecord], layers: usize) -> ClassStats {
    let frequency: Vec<Vec<(usize, usize)>> = (0..layers)
        .map(|l| {
            let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
            for &n in group.iter().flat_map(|r| r.path.at(l)) {
                *counts.entry(n).or_default() += 1;
            }
            let mut counts: Vec<(usize, usize)> = counts.into_iter().collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            counts
        })
        .collect();
    let name = group.iter().find_map(|r| {
        if r.label == Some(class) {
            r.label_name.clone()
        } else if r.predicted == class {
            r.predicted_name.clone()
        } else {
            None
        }
    });
    ClassStats {
        class,
        name,
        images: group.len(),
        class_path: frequency.iter().map(|layer| layer[0].0).collect(),
        concentration: frequency
            .iter()
            .map(|layer| layer[0].1 as f64 / group.len() as f64)
            .collect(),
        frequency,
        most_similar: None,
        least_similar: None,
    }
}

/// Cosine similarity of two classes' frequency maps over all (layer, neuron) cells.
fn cosine(a: &ClassStats, b: &ClassStats) -> f64 {
    let norm = |c: &ClassStats| {
        c.frequency
            .iter()
            .flatten()
            .map(|&(_, k)| (k * k) as f64)
            .sum::<f64>()
            .sqrt()
    };
    let dot: f64 = a
        .frequency
        .iter()
        .zip(&b.frequency)
        .map(|(la, lb)| {
            let lb: BTreeMap<usize, usize> = lb.iter().copied().collect();
            la.iter()
                .map(|(n, k)| (k * lb.get(n).copied().unwrap_or(0)) as f64)
                .sum::<f64>()
        })
        .sum();
    dot / (norm(a) * norm(b))
}

/// The median (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The mean (NaN when empty).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}
