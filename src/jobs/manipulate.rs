//! Removal and enhancement of the paths of many images: the checks that the
//! paths fit the model and images, the plan (what each image still needs), and
//! the loop, one batch per image.

use super::Pixels;
use crate::attribution::ImageContext;
use crate::experiments::manipulate::{self, ManipulationRecord, Op};
use crate::experiments::{check_clean_prob, check_inputs, check_model};
use crate::model::{fingerprint, Normalization, Vit};
use crate::names::Named;
use crate::progress::Progress;
use crate::record::{PathRecord, RecordFile};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// One image's key and every `(path record, op)` of it to run.
pub type ImageItems<'r> = (&'r str, Vec<(&'r PathRecord, Op)>);

/// Checks that `records` were found on `vit` (loaded from `model`) and, for image
/// files, on these images.
pub fn check_sources(
    vit: &Vit,
    model: &Path,
    records: &[PathRecord],
    pixels: Pixels,
    file: &Path,
) -> Result<()> {
    let model = fingerprint(model, vit)?;
    match pixels {
        Pixels::Files(root) => check_inputs(records, &model, root, file),
        Pixels::Array(_) => check_model(records, &model, file),
    }
}

/// One entry per image, in file order: every `(path, op)` of it that `out` (the
/// file `out_file`) does not hold yet. A record of `out` made from another path
/// record than `records` (from `paths_file`) holds is an error.
pub fn plan<'r>(
    records: &'r [PathRecord],
    ops: &[Op],
    out: Option<&RecordFile<ManipulationRecord>>,
    out_file: &Path,
    paths_file: &Path,
) -> Result<Vec<ImageItems<'r>>> {
    let mut images: Vec<ImageItems> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for r in records {
        let i = *position.entry(&r.image).or_insert_with(|| {
            images.push((&r.image, Vec::new()));
            images.len() - 1
        });
        for &op in ops {
            let key = ManipulationRecord::key_of(&r.image, r.method, op);
            match out.and_then(|out| out.get(&key)) {
                None => images[i].1.push((r, op)),
                Some(m) if m.path_fingerprint != Some(r.fingerprint()) => bail!(
                    "{}: the {} record of {} ({}) was made from another path record than {} holds; write to another file to start afresh",
                    out_file.display(),
                    op.name(),
                    r.image,
                    r.method,
                    paths_file.display()
                ),
                Some(_) => {}
            }
        }
    }
    Ok(images)
}

/// Runs every image of the plan (pixels from `pixels`, normalised by `norm`), giving
/// `sink` its records; an image that cannot be loaded is noted and skipped (the
/// count is returned). Stops after the image in flight when `progress` says so.
pub fn run(
    vit: &Vit,
    norm: &Normalization,
    pixels: Pixels,
    images: &[ImageItems],
    paths_file: &Path,
    sink: &mut dyn FnMut(ManipulationRecord) -> Result<()>,
    progress: &dyn Progress,
) -> Result<usize> {
    let mut failed = 0usize;
    progress.start(images.len(), "images");
    for (key, items) in images {
        if progress.stopped() {
            break;
        }
        match pixels.load(key, vit, norm) {
            Ok(image) => {
                for written in run_image(vit, key, image, items)
                    .with_context(|| paths_file.display().to_string())?
                {
                    sink(written)?;
                }
            }
            Err(e) => {
                progress.note(&format!("skipped {e:#}"));
                failed += 1;
            }
        }
        progress.advance(1);
    }
    progress.finish();
    Ok(failed)
}

/// The image's items grouped by target (normally one), each group one batch; an
/// error when the clean pass is not the one the paths were found with.
fn run_image(
    vit: &Vit,
    key: &str,
    pixels: Vec<f32>,
    items: &[(&PathRecord, Op)],
) -> Result<Vec<ManipulationRecord>> {
    let mut targets: Vec<usize> = items.iter().map(|(r, _)| r.target).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut written = Vec::new();
    for target in targets {
        let image = ImageContext::new(vit, key.to_string(), pixels.clone(), target);
        let group: Vec<(&PathRecord, Op)> = items
            .iter()
            .filter(|(r, _)| r.target == target)
            .copied()
            .collect();
        for (r, _) in &group {
            check_clean_prob(vit, &image, r)?;
        }
        written.extend(manipulate::manipulate(vit, &image, &group));
    }
    Ok(written)
}
