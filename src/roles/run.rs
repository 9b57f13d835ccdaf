//! A scan over an image folder, resumable: the streaming pass over every image,
//! then the winners' pass (heatmaps, frozen readout scales) and the records.

use super::record::{DirectEffect, Exemplar, NeuronRecord};
use super::scan::{direct_tokens, Rank, Scan, Seen};
use super::select::Neuron;
use super::topk::Hit;
use crate::data::{self, ImageEntry, ImageSet, Preset};
use crate::model::{Activation, Activations, Normalization, Site, Tokens, Vit};
use crate::names::Named;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a scan's state is saved.
const SAVE_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Options {
    pub rank: Rank,
    /// Exemplars per neuron.
    pub top: usize,
    /// Images per forward pass.
    pub batch: usize,
    pub preprocess: Preset,
}

impl Options {
    /// Images per pass: as many as keep the kept activations near 256 MB.
    pub fn default_batch(vit: &Vit, rank: Rank) -> usize {
        let c = &vit.config;
        let kept_per_image = c.rows(rank.tokens()).len() * c.intermediate * c.layers * 4;
        ((256 << 20) / kept_per_image.max(1)).clamp(1, 64)
    }
}

/// A scan of `set` for `neurons`, and where its state is kept between runs.
pub struct NeuronScan<'a> {
    pub set: &'a ImageSet,
    pub norm: &'a Normalization,
    pub neurons: Vec<Neuron>,
    pub options: Options,
    /// The model as the records name it, and its fingerprint.
    pub model: (String, String),
}

/// What a scan was started with, by name (model, images, neurons, options).
type Started = BTreeMap<String, String>;

/// A scan's state on disk (`<out>.scan`): what it was started with, how far it got.
#[derive(Serialize, Deserialize)]
/// Written from borrows (`Saved<&Started, &Scan>`), read as owned values.
struct Saved<M, S> {
    /// The model, the images (keys and labels) and the options, fingerprinted.
    started_with: M,
    /// Entries of the image set done, in order.
    done: usize,
    scan: S,
}

/// Where the state of a scan writing `out` is kept.
pub fn state_file(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".scan");
    PathBuf::from(name)
}

/// How many images the scan writing `out` has done, as its state saved them
/// (every 30 s); none without a state.
pub fn scanned(out: &Path) -> Option<usize> {
    #[derive(Deserialize)]
    struct Done {
        done: usize,
    }
    let bytes = crate::files::read(&state_file(out), crate::files::WHOLE).ok()?;
    serde_json::from_slice::<Done>(&bytes).ok().map(|d| d.done)
}

impl NeuronScan<'_> {
    fn started_with(&self) -> Started {
        let images: Vec<String> = (self.set.entries.iter())
            .map(|e| format!("{}\t{:?}", e.key, e.label))
            .collect();
        let o = &self.options;
        [
            ("model fingerprint", self.model.1.clone()),
            (
                "images",
                crate::numeric::fingerprint(images.join("\n").as_bytes()),
            ),
            (
                "neurons",
                crate::numeric::fingerprint(format!("{:?}", self.neurons).as_bytes()),
            ),
            ("rank", o.rank.name().into()),
            ("top", o.top.to_string()),
            ("preprocessing", o.preprocess.name().into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The saved state at `state`, or a new scan; a state of another scan is refused.
    fn resume(&self, vit: &Vit, state: Option<&Path>, want: &Started) -> Result<(Scan, usize)> {
        let Some(file) = state.filter(|f| f.exists()) else {
            let scan = Scan::new(
                self.neurons.clone(),
                self.options.rank,
                self.options.top,
                vit.config.classes,
            );
            return Ok((scan, 0));
        };
        let bytes = crate::files::read(file, crate::files::WHOLE)?;
        let saved: Saved<Started, Scan> = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}: not the state of a neurons scan; move it away to start afresh",
                file.display()
            )
        })?;
        if let Some((name, old)) = saved
            .started_with
            .iter()
            .find(|(k, v)| want.get(*k) != Some(v))
        {
            bail!(
                "{}: a scan with another {name} ({old} there, {} now); move it away (or write to another --out) to start afresh",
                file.display(),
                want.get(name).map_or("-", String::as_str)
            );
        }
        Ok((saved.scan, saved.done))
    }

    fn save(
        &self,
        state: Option<&Path>,
        started_with: &Started,
        scan: &Scan,
        done: usize,
    ) -> Result<()> {
        let Some(file) = state else {
            return Ok(());
        };
        let saved = Saved {
            started_with,
            done,
            scan,
        };
        crate::record::write_whole(file, &serde_json::to_vec(&saved)?)
    }

    /// Scans the images, from where the saved `state` got to (when given, it is
    /// saved now and then); returns false when `progress` stopped it (the state
    /// saved).
    pub fn scan(
        &self,
        vit: &mut Vit,
        state: Option<&Path>,
        progress: &dyn Progress,
    ) -> Result<(Scan, bool)> {
        if self.options.batch == 0 {
            bail!("batch 0: a scan takes at least one image per pass");
        }
        let tokens = self.options.rank.tokens();
        if vit.config.rows(tokens).is_empty() {
            bail!(
                "--rank {}: this model has no {} token ({}): rank by patch-max or patch-mean",
                self.options.rank,
                tokens.name(),
                vit.config.family.name
            );
        }
        let started_with = self.started_with();
        let (mut scan, mut done) = self.resume(vit, state, &started_with)?;
        set_site(vit, self.options.rank.tokens());
        progress.start(self.set.entries.len() - done, "images");
        let mut saved_at = Instant::now();
        while done < self.set.entries.len() {
            if progress.stopped() {
                self.save(state, &started_with, &scan, done)?;
                return Ok((scan, false));
            }
            let chunk =
                &self.set.entries[done..(done + self.options.batch).min(self.set.entries.len())];
            if let Some((pass, ok)) = self.pass(vit, chunk, &mut scan.failed, progress) {
                let seen: Vec<Seen> = (ok.iter())
                    .map(|&(at, e)| Seen {
                        at,
                        key: &e.key,
                        label: e.label,
                    })
                    .collect();
                scan.add(vit, &pass, &seen);
            }
            done += chunk.len();
            progress.advance(chunk.len());
            if saved_at.elapsed() > SAVE_EVERY {
                self.save(state, &started_with, &scan, done)?;
                saved_at = Instant::now();
            }
        }
        self.save(state, &started_with, &scan, done)?;
        Ok((scan, true))
    }

    /// One pass over the images of `chunk` that load, and the batch places of
    /// those whose logits are finite; the others are noted and added to `failed`.
    fn pass<'e>(
        &self,
        vit: &Vit,
        chunk: &'e [ImageEntry],
        failed: &mut Vec<String>,
        progress: &dyn Progress,
    ) -> Option<(Activations, Vec<(usize, &'e ImageEntry)>)> {
        let loaded: Vec<Result<Vec<f32>>> = chunk
            .par_iter()
            .map(|e| data::load_image(&e.path, vit, self.norm))
            .collect();
        let mut ran = Vec::new();
        let mut pixels = Vec::new();
        for (entry, image) in chunk.iter().zip(loaded) {
            match image {
                Ok(image) => {
                    ran.push(entry);
                    pixels.extend_from_slice(&image);
                }
                Err(e) => {
                    progress.note(&format!("skipped {}: {e:#}", entry.path.display()));
                    failed.push(entry.key.clone());
                }
            }
        }
        if ran.is_empty() {
            return None;
        }
        let pass = vit.activations(&pixels);
        let classes = vit.config.classes;
        let mut ok = Vec::new();
        for (at, (entry, logits)) in ran
            .into_iter()
            .zip(pass.logits.chunks_exact(classes))
            .enumerate()
        {
            if logits.iter().all(|v| v.is_finite()) {
                ok.push((at, entry));
            } else {
                progress.note(&format!(
                    "skipped {}: its logits are not finite",
                    entry.path.display()
                ));
                failed.push(entry.key.clone());
            }
        }
        Some((pass, ok))
    }
}

/// Where the model's neurons are read: FFN neurons at `tokens`.
fn set_site(vit: &mut Vit, tokens: Tokens) {
    vit.unit = Activation::MlpPost;
    vit.neuron_tokens = tokens;
}

impl NeuronScan<'_> {
    /// The scan, then the records and the keys of the images that failed; none
    /// when `progress` stopped it (its state kept at `state`).
    pub fn describe(
        &self,
        vit: &mut Vit,
        state: Option<&Path>,
        progress: &dyn Progress,
    ) -> Result<Option<(Vec<NeuronRecord>, Vec<String>)>> {
        let (scan, finished) = self.scan(vit, state, progress)?;
        Ok(finished.then(|| (self.records(vit, &scan, progress), scan.failed)))
    }

    /// The records of a finished scan: its winners run again with the neurons at
    /// every token, for their heatmaps and their frozen readout scales.
    pub fn records(
        &self,
        vit: &mut Vit,
        scan: &Scan,
        progress: &dyn Progress,
    ) -> Vec<NeuronRecord> {
        let exemplars = self.exemplars(vit, scan, progress);
        set_site(vit, self.options.rank.tokens());
        (scan.neurons.iter().zip(exemplars).enumerate())
            .map(|(k, (&n, top))| self.record(vit, scan, k, n, top))
            .collect()
    }

    /// Every neuron's exemplars, with their heatmaps and frozen readout scales
    /// from one more pass over the winning images.
    fn exemplars(&self, vit: &mut Vit, scan: &Scan, progress: &dyn Progress) -> Vec<Vec<Exemplar>> {
        let by_key: HashMap<&str, &ImageEntry> = (self.set.entries.iter())
            .map(|e| (e.key.as_str(), e))
            .collect();
        // Each winning image's places: (neuron, rank among its exemplars).
        let mut places: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
        let mut exemplars: Vec<Vec<Exemplar>> = Vec::new();
        for (k, top) in scan.hits.iter().enumerate() {
            for (j, hit) in top.hits.iter().enumerate() {
                places.entry(hit.image.as_str()).or_default().push((k, j));
            }
            let entry = |h: &Hit| by_key.get(h.image.as_str()).copied();
            exemplars.push(top.hits.iter().map(|h| exemplar(h, entry(h))).collect());
        }
        let winners: Vec<ImageEntry> = (places.keys())
            .filter_map(|k| by_key.get(k))
            .map(|e| (*e).clone())
            .collect();
        set_site(vit, Tokens::All);
        progress.start(winners.len(), "exemplar images");
        let mut failed = Vec::new();
        for chunk in winners.chunks(self.options.batch) {
            let Some((pass, ok)) = self.pass(vit, chunk, &mut failed, progress) else {
                progress.advance(chunk.len());
                continue;
            };
            for (at, entry) in ok {
                let view = ImageView::of(vit, &pass, at);
                for &(k, j) in &places[entry.key.as_str()] {
                    let e = &mut exemplars[k][j];
                    e.heatmap = view.heatmap(vit, scan.neurons[k]);
                    e.norm_scale = view.norm_scale;
                }
            }
            progress.advance(chunk.len());
        }
        progress.finish();
        exemplars
    }

    /// The record of the `k`th neuron of `scan`, `n`, with its exemplars `top`.
    fn record(
        &self,
        vit: &Vit,
        scan: &Scan,
        k: usize,
        n: Neuron,
        top: Vec<Exemplar>,
    ) -> NeuronRecord {
        let direction = vit.neuron_direction(n.layer, n.neuron);
        let mut record = NeuronRecord {
            layer: n.layer,
            neuron: n.neuron,
            site: Site::mlp_post(n.layer, self.options.rank.tokens()),
            ranked_by: self.options.rank,
            top_k: self.options.top,
            top,
            class_mean: Vec::new(),
            class_count: scan.class_counts.clone(),
            class_sum: scan.class_sums[k].clone(),
            selective: Vec::new(),
            direct_effect: vit
                .unit_effect(direct_tokens(vit), &direction)
                .map(DirectEffect::of),
            images: scan.images,
            failed: scan.failed.len(),
            model: self.model.0.clone(),
            model_fingerprint: self.model.1.clone(),
            preprocess: self.options.preprocess,
        };
        record.derive();
        record
    }
}

/// An exemplar before its winners' pass.
fn exemplar(hit: &Hit, entry: Option<&ImageEntry>) -> Exemplar {
    Exemplar {
        image: hit.image.clone(),
        label: entry.and_then(|e| e.label),
        activation: hit.score,
        heatmap: Vec::new(),
        norm_scale: None,
    }
}

/// One image of a winners' pass (neurons at every token).
struct ImageView<'p> {
    /// Every block's values, `[layers][tokens * width]` of this image.
    neurons: Vec<&'p [f32]>,
    norm_scale: Option<f32>,
}

impl<'p> ImageView<'p> {
    fn of(vit: &Vit, pass: &'p Activations, at: usize) -> ImageView<'p> {
        let c = &vit.config;
        let (t, d, f) = (c.tokens(), c.hidden, c.intermediate);
        let output = &pass.output[at * t * d..(at + 1) * t * d];
        ImageView {
            neurons: pass
                .neurons
                .iter()
                .map(|l| &l[at * t * f..(at + 1) * t * f])
                .collect(),
            norm_scale: vit.frozen_scale(direct_tokens(vit), output),
        }
    }

    /// Neuron `n`'s activation at every patch, rows of the patch grid.
    fn heatmap(&self, vit: &Vit, n: Neuron) -> Vec<Vec<f32>> {
        let c = &vit.config;
        let f = c.intermediate;
        let grid = c.image_size / c.patch_size;
        let values: Vec<f32> = c
            .rows(Tokens::Patches)
            .map(|r| self.neurons[n.layer][r * f + n.neuron])
            .collect();
        values.chunks(grid).map(<[f32]>::to_vec).collect()
    }
}
