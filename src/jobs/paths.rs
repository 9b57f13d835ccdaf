//! Influential neuron paths of many images: a run's settings, the fields its
//! records share, and the loop (images in batches, paths found and scored, one
//! record per image and method).

use crate::attribution::{
    Attributor, ImageContext, Integration, Method, NeuronPath, ScoreForm, Search, Target,
};
use crate::data::{self, ImageEntry, Preset};
use crate::model::{fingerprint, Activation, Compat, Normalization, Tokens, Vit};
use crate::names::Named;
use crate::numeric::{self, argmax};
use crate::progress::Progress;
use crate::record::{PathRecord, RecordFile};
use anyhow::{bail, Result};
use std::path::Path;

/// What a paths run asks for (`neuronpath paths`' options).
#[derive(Clone, Debug)]
pub struct PathsJob {
    /// Methods to run (empty: all; with `top_k` above 1, jas and activation).
    pub methods: Vec<Method>,
    pub search: Search,
    /// Seed of the `random` method.
    pub seed: u64,
    pub rule: Integration,
    pub form: ScoreForm,
    pub target: Target,
    /// Input normalisation (none: the checkpoint's; ImageNet's with `Compat::Reference`).
    pub preprocess: Option<Preset>,
    pub compat: Compat,
    /// Where a neuron lives (none: the family's tokens).
    pub tokens: Option<Tokens>,
    /// The unit of a path: an FFN neuron ([`Activation::MlpPost`]) or a head ([`Activation::AttnZ`]).
    pub unit: Activation,
    /// Images per batch (none: as the model's executor holds, [`Vit::images_per_batch`]).
    pub batch: Option<usize>,
}

impl Default for PathsJob {
    fn default() -> PathsJob {
        PathsJob {
            methods: Vec::new(),
            search: Search::GREEDY,
            seed: 0,
            rule: Integration::LeftRiemann(20),
            form: ScoreForm::Reference,
            target: Target::Label,
            preprocess: None,
            compat: Compat::Principled,
            tokens: None,
            unit: Activation::MlpPost,
            batch: None,
        }
    }
}

/// A job set up on its model: everything the loop needs.
pub struct PathsRun<'a> {
    pub vit: &'a Vit,
    pub attributor: Attributor<'a>,
    pub methods: Vec<Method>,
    pub search: Search,
    pub seed: u64,
    pub target: Target,
    pub norm: Normalization,
    pub batch: usize,
    /// The fields every record of the run shares, which a resumed file must match.
    pub common: PathRecord,
}

/// An image to run: a file of an image set, or prepared pixels.
pub enum Input<'a> {
    File(&'a ImageEntry),
    Pixels {
        key: String,
        label: Option<usize>,
        pixels: &'a [f32],
    },
}

/// Where a run's records go, and which it has already (not to be found again).
pub trait Sink {
    /// Whether the (best) path of image `key` by `method` is there.
    fn has(&self, key: &str, method: Method) -> bool;
    fn put(&mut self, record: PathRecord) -> Result<()>;
}

/// A resumable file: what it holds is skipped.
impl Sink for RecordFile<PathRecord> {
    fn has(&self, key: &str, method: Method) -> bool {
        self.contains(&PathRecord::key_of(key, method))
    }

    fn put(&mut self, record: PathRecord) -> Result<()> {
        self.append(record)
    }
}

/// The records in memory; nothing is skipped.
impl Sink for Vec<PathRecord> {
    fn has(&self, _: &str, _: Method) -> bool {
        false
    }

    fn put(&mut self, record: PathRecord) -> Result<()> {
        self.push(record);
        Ok(())
    }
}

/// How a run went: images written, and images skipped (unreadable, no label).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub written: usize,
    pub failed: usize,
}

impl PathsJob {
    /// Sets `vit` up for the job (arithmetic, neuron tokens, unit) and checks the search.
    pub fn configure(&self, vit: &mut Vit) -> Result<()> {
        vit.compat = self.compat;
        let tokens = self.tokens.unwrap_or(vit.config.family.neuron_tokens());
        if vit.config.rows(tokens).is_empty() {
            bail!("--tokens {}: this model has no such token", tokens.name());
        }
        vit.neuron_tokens = tokens;
        vit.unit = self.unit;
        self.search.check(vit.units())?;
        if self.unit == Activation::AttnZ && self.search != Search::GREEDY {
            bail!("--unit head: head paths are searched greedily (no --top-k, --beam or --paths-per-image)");
        }
        Ok(())
    }

    /// The preprocessing preset of the run.
    pub fn preset(&self) -> Preset {
        self.preprocess.unwrap_or(match self.compat {
            Compat::Principled => Preset::Checkpoint,
            Compat::Reference => Preset::Reference,
        })
    }

    /// The run on `vit` (set up by [`PathsJob::configure`]) loaded from `model`:
    /// the methods defined for its unit (the others noted as skipped), the record
    /// fields, the batch.
    pub fn prepare<'a>(
        &self,
        vit: &'a Vit,
        model: &Path,
        progress: &dyn Progress,
    ) -> Result<PathsRun<'a>> {
        let asked = self.asked_methods()?;
        // A head's value is its scale: its paths are scored by the paper's form.
        let form = match self.unit {
            Activation::AttnZ => ScoreForm::Paper,
            Activation::MlpPost | Activation::HeadMlpPost => self.form,
        };
        let attributor = Attributor {
            vit,
            rule: self.rule,
            form,
        };
        let (methods, skipped): (Vec<Method>, Vec<Method>) =
            asked.iter().partition(|&&m| attributor.supports(m));
        if !skipped.is_empty() {
            let names: Vec<&str> = skipped.iter().map(|m| m.name()).collect();
            progress.note(&format!(
                "{}: not defined for this unit, skipped",
                names.join(", ")
            ));
        }
        if methods.is_empty() {
            bail!("no method left to run for this unit");
        }
        let batch = self
            .batch
            .unwrap_or_else(|| vit.images_per_batch(self.rule.steps() * self.search.beam));
        Ok(PathsRun {
            vit,
            attributor,
            methods,
            search: self.search,
            seed: self.seed,
            target: self.target,
            norm: data::normalization(vit, self.preset()),
            batch,
            common: self.shared_fields(vit, model, form)?,
        })
    }

    /// The methods to run: those asked for, or the default for the search.
    fn asked_methods(&self) -> Result<Vec<Method>> {
        let top_k_methods = [Method::Jas, Method::Activation];
        if let Some(m) =
            (self.methods.iter()).find(|m| self.methods.iter().filter(|n| n == m).count() > 1)
        {
            bail!(
                "--method: {} is given twice; each method's paths are written once per image",
                m.name()
            );
        }
        match (self.methods.is_empty(), self.search.top_k) {
            (true, 1) => Ok(Method::ALL.to_vec()),
            (true, _) => Ok(top_k_methods.to_vec()),
            (false, 1) => Ok(self.methods.clone()),
            (false, k) => match self.methods.iter().find(|m| !top_k_methods.contains(m)) {
                Some(m) => bail!(
                    "--top-k {k}: only jas and activation find top-K paths, not {}",
                    m.name()
                ),
                None => Ok(self.methods.clone()),
            },
        }
    }

    /// The fields every record of this run shares, which a resumed file must match.
    fn shared_fields(&self, vit: &Vit, model: &Path, form: ScoreForm) -> Result<PathRecord> {
        Ok(PathRecord {
            image: String::new(),
            label: None,
            label_name: None,
            method: Method::Jas,
            // The shape of the run's paths, K neurons per layer (the top-k setting
            // a resumed file must match), filled in per image.
            path: NeuronPath(vec![vec![0; self.search.top_k]; vit.config.layers]),
            beam: self.search.beam,
            rank: 0,
            neurons: vit.units(),
            classes: Some(vit.config.classes),
            score: 0.0,
            target: 0,
            target_source: self.target,
            target_prob: 0.0,
            predicted: 0,
            predicted_name: None,
            predicted_prob: 0.0,
            activation: vec![],
            gradient: vec![],
            contribution: vec![],
            integration: self.rule.rule(),
            steps: self.rule.steps(),
            score_form: form,
            model: model.display().to_string(),
            preprocess: self.preset(),
            sites: (0..vit.config.layers).map(|l| vit.neuron_site(l)).collect(),
            compat: self.compat,
            model_fingerprint: Some(fingerprint(model, vit)?),
            image_fingerprint: None,
            seed: Some(self.seed),
        })
    }
}

impl Input<'_> {
    pub fn key(&self) -> &str {
        match self {
            Input::File(entry) => &entry.key,
            Input::Pixels { key, .. } => key,
        }
    }

    fn label(&self) -> Option<usize> {
        match self {
            Input::File(entry) => entry.label,
            Input::Pixels { label, .. } => *label,
        }
    }

    /// For messages: the file, or the image's place in the array.
    fn name(&self) -> String {
        match self {
            Input::File(entry) => entry.path.display().to_string(),
            Input::Pixels { key, .. } => format!("image {key}"),
        }
    }

    fn load(&self, vit: &Vit, norm: &Normalization, target: Target) -> Result<ImageContext> {
        match self {
            Input::File(entry) => ImageContext::load(vit, entry, norm, target),
            Input::Pixels { key, label, pixels } => {
                ImageContext::with_target(vit, key.clone(), pixels.to_vec(), *label, target)
            }
        }
    }

    /// [`numeric::fingerprint`] of the file's bytes, or of the pixels' (little-endian f32).
    fn fingerprint(&self) -> Result<String> {
        Ok(numeric::fingerprint(&match self {
            Input::File(entry) => crate::files::read(&entry.path, crate::files::IMAGE)?,
            Input::Pixels { pixels, .. } => pixels.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }))
    }
}

impl PathsRun<'_> {
    /// Finds the paths of every `(input, method)` that `sink` has not, in batches,
    /// and gives it one record per image and method (and rank) in input order.
    /// An image that cannot be loaded is noted and skipped; stops after the batch in
    /// flight when `progress` says so.
    pub fn run(
        &self,
        inputs: &[Input],
        sink: &mut dyn Sink,
        progress: &dyn Progress,
    ) -> Result<Tally> {
        let mut tally = Tally::default();
        progress.start(inputs.len(), "images");
        for chunk in inputs.chunks(self.batch) {
            if progress.stopped() {
                break;
            }
            let mut ready: Vec<(&Input, ImageContext)> = Vec::new();
            for input in chunk {
                match input.load(self.vit, &self.norm, self.target) {
                    Ok(ctx) => ready.push((input, ctx)),
                    Err(e) => {
                        progress.note(&format!("skipped {}: {e:#}", input.name()));
                        tally.failed += 1;
                        progress.advance(1);
                    }
                }
            }
            if ready.is_empty() {
                continue;
            }
            self.write_batch(&ready, sink)?;
            tally.written += ready.len();
            progress.advance(ready.len());
        }
        progress.finish();
        Ok(tally)
    }

    /// The paths of one batch of loaded images, as records.
    fn write_batch(&self, ready: &[(&Input, ImageContext)], sink: &mut dyn Sink) -> Result<()> {
        let vit = self.vit;
        let contexts: Vec<&ImageContext> = ready.iter().map(|(_, c)| c).collect();
        let found = self.attributor.find_and_score_with(
            &contexts,
            &self.methods,
            self.seed,
            self.search,
            |i, m| !sink.has(ready[i].0.key(), m),
        );
        // Each image's file is read for its fingerprint once, not once per method.
        let mut prints: Vec<Option<String>> = vec![None; ready.len()];
        for found in found {
            let (input, ctx) = &ready[found.image];
            let probs = ctx.probabilities(vit);
            let predicted = argmax(&probs);
            sink.put(PathRecord {
                image: input.key().to_string(),
                label: input.label(),
                label_name: input.label().and_then(|l| class_name(vit, input.key(), l)),
                method: found.method,
                path: found.path,
                rank: found.rank,
                score: found.score.score,
                target: ctx.target,
                target_prob: probs[ctx.target],
                predicted,
                predicted_name: vit.class_name(predicted),
                predicted_prob: probs[predicted],
                contribution: found.score.contribution,
                activation: found.score.activation,
                gradient: found.score.gradient,
                image_fingerprint: Some(match &prints[found.image] {
                    Some(print) => print.clone(),
                    None => prints[found.image].insert(input.fingerprint()?).clone(),
                }),
                ..self.common.clone()
            })?;
        }
        Ok(())
    }
}

/// The name of class `label`: the model's, else the image's class folder.
fn class_name(vit: &Vit, key: &str, label: usize) -> Option<String> {
    vit.class_name(label)
        .or_else(|| key.split('/').next().map(String::from))
}

/// Refuses to resume when an image of the file is not the one its records were
/// found on: its label is not its label now (the folders were renamed, or labels
/// were assigned otherwise), or its file's bytes changed (the image
/// fingerprint). Nothing is written then.
pub fn check_resumed(out: &RecordFile<PathRecord>, inputs: &[Input], file: &Path) -> Result<()> {
    for input in inputs {
        let old = Method::ALL
            .iter()
            .find_map(|&m| out.get(&PathRecord::key_of(input.key(), m)));
        let Some(old) = old else {
            continue;
        };
        if old.label != input.label() {
            bail!(
                "{}: {} has label {:?} ({}) there, but {:?} in this run (class folders now match the model's class names, or were renamed); write to another file to start afresh",
                file.display(),
                input.key(),
                old.label,
                old.label_name.as_deref().unwrap_or("-"),
                input.label()
            );
        }
        if let Some(print) = &old.image_fingerprint {
            if &input.fingerprint()? != print {
                bail!(
                    "{}: the paths of {} there were found on another image: {} changed since (its bytes differ); refused, nothing was written: put the image back, or write to another file to find the paths of every image afresh",
                    file.display(),
                    input.key(),
                    input.name()
                );
            }
        }
    }
    Ok(())
}
