//! Removal and enhancement of path neurons: each image's own path set to zero, or
//! doubled, at every layer at once; the change in the target probability and in
//! top-1 accuracy tells whether the path matters to the prediction.

use super::{edited_outcomes, NeuronEdit, Outcome};
use crate::attribution::Method;
use crate::attribution::{ImageContext, NeuronPath};
use crate::model::Vit;
use crate::names::Named;
use crate::record::{unrecorded, PathRecord, Record, Setting, Shardable};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// Path neurons set to 0.
    Remove,
    /// Path neurons doubled.
    Enhance,
}

crate::names::display_by_name!(Op);

impl Named for Op {
    const ALL: &'static [Op] = &[Op::Remove, Op::Enhance];

    fn name(self) -> &'static str {
        match self {
            Op::Remove => "remove",
            Op::Enhance => "enhance",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Op::Remove => "path neurons set to 0",
            Op::Enhance => "path neurons doubled",
        }
    }
}

impl Op {
    pub fn factor(self) -> f32 {
        match self {
            Op::Remove => 0.0,
            Op::Enhance => 2.0,
        }
    }

    /// The edit of `path`: every neuron of each layer (all K of a top-K path).
    pub fn edit(self, path: &NeuronPath) -> NeuronEdit {
        path.0
            .iter()
            .map(|ns| ns.iter().map(|&n| (n, self.factor())).collect())
            .collect()
    }
}

/// One image's path under one operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManipulationRecord {
    pub image: String,
    pub method: Method,
    /// "remove" or "enhance".
    pub op: Op,
    pub label: Option<usize>,
    pub target: usize,
    /// Target-class probability before and after the edit.
    pub prob_before: f32,
    pub prob_after: f32,
    pub predicted_before: usize,
    pub predicted_after: usize,
    /// The model's fingerprint, as its path record gives it (absent in older files).
    #[serde(default)]
    pub model_fingerprint: Option<String>,
    /// [`PathRecord::fingerprint`] of the path record edited (absent in older files).
    #[serde(default)]
    pub path_fingerprint: Option<String>,
}

impl ManipulationRecord {
    pub fn key_of(image: &str, method: Method, op: Op) -> String {
        format!("{image}\t{method}\t{op}")
    }

    /// `p_after / p_before - 1`; none when `p_before` underflowed to 0.
    pub fn prob_change(&self) -> Option<f64> {
        (self.prob_before > 0.0).then(|| self.prob_after as f64 / self.prob_before as f64 - 1.0)
    }

    /// The class accuracy is counted against: the label, or the target without one.
    fn truth(&self) -> usize {
        self.label.unwrap_or(self.target)
    }
}

impl Record for ManipulationRecord {
    const KIND: &'static str = "manipulation";

    fn key(&self) -> String {
        ManipulationRecord::key_of(&self.image, self.method, self.op)
    }

    fn settings(&self) -> Vec<Setting> {
        vec![(
            "model fingerprint",
            self.model_fingerprint.clone().unwrap_or_else(unrecorded),
        )]
    }
}

impl Shardable for ManipulationRecord {
    fn image(&self) -> Option<&str> {
        Some(&self.image)
    }
}

/// Every `(path record, op)` of one image, run as one batch.
pub fn manipulate(
    vit: &Vit,
    image: &ImageContext,
    items: &[(&PathRecord, Op)],
) -> Vec<ManipulationRecord> {
    let edits: Vec<NeuronEdit> = items.iter().map(|(r, op)| op.edit(&r.path)).collect();
    let edits: Vec<&NeuronEdit> = edits.iter().collect();
    let before = Outcome::clean(vit, image);
    items
        .iter()
        .zip(edited_outcomes(vit, image, &edits))
        .map(|((r, op), after)| ManipulationRecord {
            image: r.image.clone(),
            method: r.method,
            op: *op,
            label: r.label,
            target: image.target,
            prob_before: before.prob,
            prob_after: after.prob,
            predicted_before: before.predicted,
            predicted_after: after.predicted,
            model_fingerprint: r.model_fingerprint.clone(),
            path_fingerprint: Some(r.fingerprint()),
        })
        .collect()
}

/// The paper's two measures for one method and operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManipulationSummary {
    pub method: Method,
    pub op: Op,
    pub images: usize,
    /// Mean of `p_after / p_before - 1` over the images with `p_before > 0` (a
    /// probability that underflowed to 0 has no ratio).
    pub prob_deviation: f64,
    pub accuracy_before: f64,
    pub accuracy_after: f64,
    /// `accuracy_after - accuracy_before`.
    pub accuracy_deviation: f64,
}

/// One summary per (method, op), in order of first appearance.
pub fn summarize(records: &[ManipulationRecord]) -> Vec<ManipulationSummary> {
    let mut groups: Vec<((Method, Op), Vec<&ManipulationRecord>)> = Vec::new();
    for r in records {
        let key = (r.method, r.op);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    groups
        .into_iter()
        .map(|((method, op), group)| {
            let n = group.len() as f64;
            let mean = |f: &dyn Fn(&ManipulationRecord) -> f64| {
                group.iter().map(|r| f(r)).sum::<f64>() / n
            };
            let accuracy_before = mean(&|r| f64::from(u8::from(r.predicted_before == r.truth())));
            let accuracy_after = mean(&|r| f64::from(u8::from(r.predicted_after == r.truth())));
            ManipulationSummary {
                method,
                op,
                images: group.len(),
                prob_deviation: {
                    let ratios: Vec<f64> = group.iter().filter_map(|r| r.prob_change()).collect();
                    ratios.iter().sum::<f64>() / ratios.len() as f64
                },
                accuracy_before,
                accuracy_after,
                accuracy_deviation: accuracy_after - accuracy_before,
            }
        })
        .collect()
}
