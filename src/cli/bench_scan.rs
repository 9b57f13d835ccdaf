//! `neuronpath bench --scan N`: the neuron scan of `neuronpath neurons` (every
//! neuron of every layer of the bundled model: an atlas) against a plain forward
//! pass over the same images, in one run, alternated twice; and the scan's peak
//! memory, which must not grow with the number of images.

use anyhow::{bail, Result};
use neuronpath::data::{self, ImageEntry, ImageSet, Preset};
use neuronpath::model::{self, LoadOptions, Vit};
use neuronpath::progress::Silent;
use neuronpath::roles::{Neuron, NeuronScan, Options, Rank};
use rayon::prelude::*;
use std::path::Path;
use std::time::Instant;

/// Images per pass, as `neurons` picks for the bundled model.
const BATCH: usize = 64;

pub fn run(images: &Path, count: usize) -> Result<()> {
    let mut vit = model::load(Path::new(super::DEFAULT_MODEL), &LoadOptions::default())?;
    let labels = data::labels::Labels {
        names: vit.class_names.as_deref(),
        classes: vit.config.classes,
        map: None,
        required: false,
    };
    let mut set = ImageSet::open(images, &labels)?;
    if set.entries.len() < count {
        bail!(
            "--scan {count}: {} has {} images",
            images.display(),
            set.entries.len()
        );
    }
    // Every k-th image, so that all classes are in.
    let step = set.entries.len() / count;
    set.entries = set.entries.into_iter().step_by(step).take(count).collect();
    let norm = data::normalization(&vit, Preset::Checkpoint);
    let layers: Vec<usize> = (0..vit.config.layers).collect();
    let job = NeuronScan {
        set: &set,
        norm: &norm,
        neurons: Neuron::of_layers(&layers, vit.config.intermediate),
        options: Options {
            rank: Rank::Cls,
            top: 16,
            batch: BATCH,
            preprocess: Preset::Checkpoint,
        },
        model: (String::new(), String::new()),
    };
    println!("\nneuron scan: {} neurons (every neuron of the bundled model), {count} images of {}, top 16, batch {BATCH}", job.neurons.len(), images.display());
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "pass", "images/s", "vs plain", "peak GiB"
    );
    for _ in 0..2 {
        let start = Instant::now();
        plain_forward(&vit, &set.entries, &norm);
        let plain = count as f64 / start.elapsed().as_secs_f64();
        println!(
            "{:<28} {:>10.0} {:>10} {:>10}",
            "plain forward (logits)", plain, "1.00x", "-"
        );
        super::rss::reset_peak();
        let start = Instant::now();
        let (scan, _) = job.scan(&mut vit, None, &Silent)?;
        let scanned = count as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let records = job.records(&mut vit, &scan, &Silent);
        let winners = start.elapsed().as_secs_f64();
        let ratio = format!("{:.2}x", scanned / plain);
        println!(
            "{:<28} {:>10.0} {:>10} {:>10.2}",
            "scan (all neurons)",
            scanned,
            ratio,
            super::rss::peak_gib()
        );
        let exemplars: std::collections::BTreeSet<&str> = records
            .iter()
            .flat_map(|r| r.top.iter().map(|e| e.image.as_str()))
            .collect();
        println!(
            "{:<28} {:>10.1}s for {} exemplar images",
            "  then heatmaps and records",
            winners,
            exemplars.len()
        );
    }
    Ok(())
}

/// Decode and run every image to its logits, `BATCH` at a time.
fn plain_forward(vit: &Vit, entries: &[ImageEntry], norm: &model::Normalization) {
    for chunk in entries.chunks(BATCH) {
        let pixels: Vec<f32> = chunk
            .par_iter()
            .map(|e| data::load_image(&e.path, vit, norm).unwrap_or_default())
            .collect::<Vec<_>>()
            .concat();
        std::hint::black_box(vit.logits(&pixels, &[]));
    }
}
