//! One neuron's description, as a JSON line of `neuronpath neurons`.

use super::profile;
use super::scan::Rank;
use super::topk::{Hit, TopK};
use crate::data::Preset;
use crate::model::Site;
use crate::names::Named;
use crate::record::{Record, Setting, Shardable};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Classes listed in `selective`, `promotes` and `suppresses`.
const LISTED: usize = 5;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NeuronRecord {
    /// Block, counted from 0 as a path's layers.
    pub layer: usize,
    pub neuron: usize,
    /// Where its activation was read (e.g. `blocks.3.mlp.post@cls`).
    pub site: Site,
    /// How an image's activation was taken at the site.
    pub ranked_by: Rank,
    /// Exemplars asked for (`--top`); `top` is shorter only on fewer images.
    pub top_k: usize,
    /// The images of the dataset with the largest activation, largest first (ties:
    /// the smaller key first).
    pub top: Vec<Exemplar>,
    /// Per class of the images' labels, the mean activation (null: no image).
    pub class_mean: Vec<Option<f32>>,
    /// Per class, the labelled images scanned.
    pub class_count: Vec<u64>,
    /// Per class, the exact sum the mean comes from, in units of 2^-24 (each
    /// activation rounded towards zero once): shards merge by adding these.
    pub class_sum: Vec<i64>,
    /// The classes whose mean most exceeds the mean of the other classes' means,
    /// most first, with that difference.
    pub selective: Vec<ClassValue>,
    /// The direct effect on the logits; absent where the readout does not read the
    /// neuron's output directly.
    pub direct_effect: Option<DirectEffect>,
    /// Images scanned, and images skipped (unreadable, or a non-finite pass).
    pub images: usize,
    pub failed: usize,
    pub model: String,
    pub model_fingerprint: String,
    pub preprocess: Preset,
}

/// One top-activating image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    /// Relative to `--images`.
    pub image: String,
    pub label: Option<usize>,
    pub activation: f32,
    /// The neuron's activation at every patch token, rows of the patch grid.
    pub heatmap: Vec<Vec<f32>>,
    /// The factor the image's frozen readout scales the neuron's direct effect by
    /// (see `direct_effect`).
    pub norm_scale: Option<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassValue {
    pub class: usize,
    pub value: f32,
}

/// Direct logit attribution: the neuron's output weights (one unit of activation)
/// through the final norm frozen at each exemplar's scale and the head, averaged
/// over the exemplars. The direct path only: not what the neuron does through the
/// later layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectEffect {
    /// Per class, the change of the logit (the mean of the exemplars' `norm_scale`
    /// times `per_unit_scale`).
    pub logits: Vec<f32>,
    /// Per class, the change at a norm scale of 1: the weights alone.
    pub per_unit_scale: Vec<f32>,
    /// The classes it raises most, and lowers most.
    pub promotes: Vec<ClassValue>,
    pub suppresses: Vec<ClassValue>,
}

impl DirectEffect {
    /// The effect of weights whose change at scale 1 is `per_unit_scale`; the rest
    /// is filled in by [`NeuronRecord::derive`].
    pub fn of(per_unit_scale: Vec<f32>) -> DirectEffect {
        DirectEffect {
            logits: Vec::new(),
            per_unit_scale,
            promotes: Vec::new(),
            suppresses: Vec::new(),
        }
    }
}

impl NeuronRecord {
    /// What every record of one output file shares: a resumed file is checked
    /// against it.
    pub fn shared(model_fingerprint: &str, rank: Rank, preprocess: Preset) -> Vec<Setting> {
        vec![
            ("model fingerprint", model_fingerprint.to_string()),
            ("rank", rank.name().into()),
            ("preprocessing", preprocess.name().into()),
        ]
    }

    /// Adds the description of the same neuron over other images (a shard of the
    /// same run): the exemplars merged, the sums and counts added. The result equals
    /// the description over both image sets.
    pub fn merge(&mut self, other: NeuronRecord) {
        let mut top = TopK::default();
        let by_key: HashMap<String, Exemplar> = (self.top.drain(..).chain(other.top))
            .map(|e| {
                let hit = Hit {
                    score: e.activation,
                    image: e.image.clone(),
                };
                top.offer(self.top_k, hit);
                (e.image.clone(), e)
            })
            .collect();
        self.top = top.hits.iter().map(|h| by_key[&h.image].clone()).collect();
        for (sum, add) in self.class_sum.iter_mut().zip(other.class_sum) {
            *sum = sum.saturating_add(add);
        }
        for (count, add) in self.class_count.iter_mut().zip(other.class_count) {
            *count += add;
        }
        self.images += other.images;
        self.failed += other.failed;
        self.derive();
    }

    /// Fills in what follows from the sums, the exemplars and the weights: the class
    /// means, the selective classes, and the direct effect's logits and classes.
    pub fn derive(&mut self) {
        self.class_mean = self
            .class_sum
            .iter()
            .zip(&self.class_count)
            .map(|(&s, &n)| profile::mean(s, n))
            .collect();
        self.selective = selective(&self.class_mean);
        let scales: Vec<f32> = self.top.iter().filter_map(|e| e.norm_scale).collect();
        if let Some(direct) = &mut self.direct_effect {
            let scale = scales.iter().sum::<f32>() / scales.len().max(1) as f32;
            direct.logits = direct.per_unit_scale.iter().map(|v| v * scale).collect();
            let mut order: Vec<ClassValue> = direct
                .logits
                .iter()
                .enumerate()
                .map(|(class, &value)| ClassValue { class, value })
                .collect();
            order.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.class.cmp(&b.class)));
            direct.promotes = order.iter().take(LISTED).cloned().collect();
            direct.suppresses = order.iter().rev().take(LISTED).cloned().collect();
        }
    }
}

/// The classes whose mean most exceeds the mean of the other classes' means.
fn selective(means: &[Option<f32>]) -> Vec<ClassValue> {
    let known: Vec<(usize, f32)> = means
        .iter()
        .enumerate()
        .filter_map(|(c, m)| m.map(|m| (c, m)))
        .collect();
    if known.len() < 2 {
        return Vec::new();
    }
    let total: f64 = known.iter().map(|&(_, m)| m as f64).sum();
    let others = (known.len() - 1) as f64;
    let mut by: Vec<ClassValue> = known
        .iter()
        .map(|&(class, m)| ClassValue {
            class,
            value: (m as f64 - (total - m as f64) / others) as f32,
        })
        .collect();
    by.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.class.cmp(&b.class)));
    by.truncate(LISTED);
    by
}

impl Record for NeuronRecord {
    const KIND: &'static str = "neuron";
    const FIRST_FIELD: &'static str = "layer";

    fn key(&self) -> String {
        format!("{}:{}", self.layer, self.neuron)
    }

    fn settings(&self) -> Vec<Setting> {
        let shared = NeuronRecord::shared(&self.model_fingerprint, self.ranked_by, self.preprocess);
        [shared, vec![("top", self.top_k.to_string())]].concat()
    }
}

impl Shardable for NeuronRecord {
    /// A record sums up the whole dataset (a shard's part of it).
    const PER_IMAGE: bool = false;

    fn image(&self) -> Option<&str> {
        None
    }

    /// The same neuron described over another shard's images.
    fn combine(mut self, other: NeuronRecord) -> anyhow::Result<NeuronRecord> {
        if (self.top_k, self.class_sum.len()) != (other.top_k, other.class_sum.len()) {
            anyhow::bail!(
                "neuron {}: described with top {} over {} classes in one shard, top {} over {} in another",
                self.key(),
                self.top_k,
                self.class_sum.len(),
                other.top_k,
                other.class_sum.len()
            );
        }
        self.merge(other);
        Ok(self)
    }
}
