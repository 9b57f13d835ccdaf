//! How far greedy and beam search are from the best path: every one-neuron-per-layer
//! path of a small model scored (`results/search/`).
//!
//! ```sh
//! cargo run --release --example optimality_gap -- MODEL POINTS OUT.jsonl [IMAGES PER_CLASS]
//! ```
//! JAS by `POINTS`-point Gauss-Legendre (the same for every search). Inputs: the
//! first `PER_CLASS` images of each class folder of `IMAGES` (the checkpoint's
//! normalisation, target = the predicted class), or without them the four inputs of
//! `../shared/fixtures/tiny-vit-reference.npz` with its target. Writes per input the
//! best path and score of greedy, beam 4, 16 and 64 and of the exhaustive search, and
//! how many paths score above each (by more than 1e-6 relative).

use anyhow::{bail, Context, Result};
use neuronpath::attribution::search::top_indices;
use neuronpath::attribution::{Attributor, ImageContext, Integration, ScoreForm, Search, Target};
use neuronpath::data::{self, ImageSet, Preset};
use neuronpath::model::{self, LoadOptions, Vit};
use std::io::Write;
use std::path::{Path, PathBuf};

const BEAMS: [usize; 4] = [1, 4, 16, 64];

fn inputs(vit: &Vit, folder: Option<(&Path, usize)>) -> Result<Vec<ImageContext>> {
    let Some((folder, per_class)) = folder else {
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/tiny-vit-reference.npz");
        let arrays: std::collections::HashMap<_, _> =
            model::npy::read_npz(&file)?.into_iter().collect();
        let (Some(pixels), Some(target)) = (arrays.get("pixels"), arrays.get("target")) else {
            bail!("{}: no pixels or target", file.display());
        };
        let target = target.to_f32()?[0] as usize;
        let pixels = pixels.to_f32()?;
        let per_image = pixels.len() / 4;
        return Ok(pixels
            .chunks_exact(per_image)
            .enumerate()
            .map(|(i, p)| ImageContext::new(vit, format!("reference-{i}"), p.to_vec(), target))
            .collect());
    };
    let labels = neuronpath::data::labels::Labels {
        names: vit.class_names.as_deref(),
        classes: vit.config.classes,
        map: None,
        required: true,
    };
    let set = ImageSet::open(folder, &labels)?;
    let norm = data::normalization(vit, Preset::Checkpoint);
    let mut taken = vec![0usize; set.classes.len()];
    let mut contexts = Vec::new();
    for entry in &set.entries {
        let class = entry.label.context("images outside class folders")?;
        if taken[class] < per_class {
            taken[class] += 1;
            contexts.push(ImageContext::load(vit, entry, &norm, Target::Predicted)?);
        }
    }
    Ok(contexts)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 && args.len() != 5 {
        bail!("usage: optimality_gap MODEL POINTS OUT.jsonl [IMAGES PER_CLASS]");
    }
    let vit = model::load(Path::new(&args[0]), &LoadOptions::default())?;
    let points: usize = args[1].parse().context("POINTS: a number")?;
    let folder = match args.get(3) {
        Some(dir) => Some((
            Path::new(dir),
            args[4].parse().context("PER_CLASS: a number")?,
        )),
        None => None,
    };
    let attributor = Attributor {
        vit: &vit,
        rule: Integration::GaussLegendre(points),
        form: ScoreForm::Reference,
    };
    let out_path = PathBuf::from(&args[2]);
    let mut out = std::fs::File::create(&out_path)
        .with_context(|| format!("{}: cannot write", out_path.display()))?;
    for img in inputs(&vit, folder)? {
        let started = std::time::Instant::now();
        let scores = attributor.all_path_scores(&img, 8192)?;
        // The search's own score and the exhaustive one of the same path come from
        // different batches: equal to ~1e-7 relative (f32 sums), not to the bit.
        let above = |s: f64| scores.iter().filter(|&&v| v > s + 1e-6 * s.abs()).count();
        let mut line =
            serde_json::json!({ "image": img.key, "target": img.target, "paths": scores.len() });
        let best = top_indices(&scores, 1)[0];
        line["exhaustive"] =
            serde_json::json!({ "path": attributor.nth_path(best), "score": scores[best] });
        for beam in BEAMS {
            let search = Search {
                beam,
                ..Search::GREEDY
            };
            let found = attributor
                .locate_and_score(&[&img], search)
                .remove(0)
                .remove(0);
            let score = found.1.score;
            line[format!("beam{beam}")] =
                serde_json::json!({ "path": found.0, "score": score, "paths_above": above(score) });
        }
        line["seconds"] = started.elapsed().as_secs_f64().into();
        writeln!(out, "{line}")?;
        eprintln!("{line}");
    }
    Ok(())
}
