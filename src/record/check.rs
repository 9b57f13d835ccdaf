//! The checks of a path record, in one place for every reader: on its own (any
//! file: [`record`], through [`super::Record::check`]), and against the model a
//! command runs ([`check_against`]). A file as a whole (one model, no record twice)
//! is checked where it is read ([`super::read_each`]).

use super::PathRecord;
use crate::model::Vit;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// What a path record must be whatever the model: a path with the same number of
/// neurons at every layer, each in range and once per layer; per-layer values and
/// sites for each layer; classes in range; finite scores and probabilities.
pub(super) fn record(r: &PathRecord) -> Result<()> {
    let who = || format!("{} ({})", r.image, r.method);
    let path = &r.path;
    let layers = path.layers();
    if layers == 0 {
        bail!("{}: the path is empty", who());
    }
    let k = path.at(0).len();
    if let Some(l) = (0..layers).find(|&l| path.at(l).len() != k) {
        bail!(
            "{}: the path has {k} neuron(s) at layer 0 but {} at layer {l} (a ragged path; a top-K path has K at every layer)",
            who(),
            path.at(l).len()
        );
    }
    if let Some((l, n)) = path.neurons().find(|&(_, n)| n >= r.neurons) {
        bail!(
            "{}: neuron {n} at layer {l} is out of range: the record's layers have {} neurons (`neurons`)",
            who(),
            r.neurons
        );
    }
    if let Some((l, n)) = path
        .neurons()
        .find(|&(l, n)| path.at(l).iter().filter(|&&m| m == n).count() > 1)
    {
        bail!("{}: neuron {n} appears twice at layer {l}", who());
    }
    let per_layer = [
        ("activation", r.activation.len()),
        ("gradient", r.gradient.len()),
        ("contribution", r.contribution.len()),
    ];
    if let Some((field, n)) = per_layer.iter().find(|(_, n)| *n != layers) {
        bail!(
            "{}: {field} has {n} values for a path of {layers} layers",
            who()
        );
    }
    if !r.sites.is_empty() && r.sites.len() != layers {
        bail!(
            "{}: sites has {} entries for a path of {layers} layers",
            who(),
            r.sites.len()
        );
    }
    check_classes(r).with_context(who)?;
    let numbers = [
        ("score", r.score, f64::NEG_INFINITY, f64::INFINITY),
        ("target_prob", r.target_prob.into(), 0.0, 1.0),
        ("predicted_prob", r.predicted_prob.into(), 0.0, 1.0),
    ];
    if let Some((field, v, ..)) =
        (numbers.iter()).find(|(_, v, lo, hi)| !(v.is_finite() && lo <= v && v <= hi))
    {
        bail!("{}: {field} is {v}: invalid", who());
    }
    if r.rank >= r.beam {
        bail!(
            "{}: rank {} of a beam of {}: a beam search keeps at most its width",
            who(),
            r.rank,
            r.beam
        );
    }
    Ok(())
}

/// The record's classes: in range of `classes` (where recorded), and the target
/// the label when the label was explained.
fn check_classes(r: &PathRecord) -> Result<()> {
    let fields = [
        ("label", r.label),
        ("target", Some(r.target)),
        ("predicted", Some(r.predicted)),
    ];
    if let Some(classes) = r.classes {
        if let Some((field, Some(c))) = fields.iter().find(|(_, c)| c.is_some_and(|c| c >= classes))
        {
            bail!("{field} is {c}: out of range, the model has {classes} classes (`classes`)");
        }
    }
    if let (crate::attribution::Target::Label, Some(label)) = (r.target_source, r.label) {
        if r.target != label {
            bail!(
                "target is {} but label is {label}, and the paths explain the label (`target_source`)",
                r.target
            );
        }
    }
    Ok(())
}

/// Checks that the paths of `records` (read from `file`) fit `vit`, set up as
/// they were found ([`super::as_found`]): each on its own (records may come from
/// elsewhere than a file), then a layer of the path per layer of the model,
/// neurons in range, the model's sites, classes in range.
pub fn check_against(vit: &Vit, records: &[PathRecord], file: &Path) -> Result<()> {
    for r in records {
        record(r)
            .and_then(|()| fits(vit, r))
            .with_context(|| file.display().to_string())?;
    }
    Ok(())
}

fn fits(vit: &Vit, r: &PathRecord) -> Result<()> {
    let (layers, f, classes) = (vit.config.layers, vit.units(), vit.config.classes);
    let who = || format!("{} ({})", r.image, r.method);
    if r.path.layers() != layers {
        bail!(
            "{}: the path has {} layers but the model has {layers}",
            who(),
            r.path.layers()
        );
    }
    if let Some((l, n)) = r.path.neurons().find(|&(_, n)| n >= f) {
        bail!(
            "{}: neuron {n} at layer {l} is out of range: the model's layers have {f} neurons",
            who()
        );
    }
    if let Some((l, site)) = (r.sites.iter().enumerate()).find(|(l, s)| **s != vit.neuron_site(*l))
    {
        bail!(
            "{}: the path's neuron at layer {l} is at {site}, but this model's neurons are at {}",
            who(),
            vit.neuron_site(l)
        );
    }
    let fields = [("label", r.label), ("target", Some(r.target))];
    if let Some((field, Some(c))) = fields.iter().find(|(_, c)| c.is_some_and(|c| c >= classes)) {
        bail!(
            "{}: {field} is {c}: outside the model's {classes} classes",
            who()
        );
    }
    Ok(())
}
