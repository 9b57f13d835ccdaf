//! `neuronpath report`: path (and manipulation and stats) files as one HTML page.
//!
//! Researchers would rather look than read, and they open results from disk, mail
//! them and archive them beside the data. So the page is one self-contained file:
//! CSS inline, figures as inline SVG (drawn with plotters), thumbnails as PNG
//! `data:` URIs, no script, and no reference to anything outside itself.
//!
//! Layout: `render` assembles the page from one module per section (`methods`,
//! `classes`, `images`); `figures` draws, `palette` colours the methods,
//! `thumbnails` shrinks and embeds the images.

mod check;
mod classes;
mod figures;
mod images;
mod methods;
mod neurons;
mod palette;
mod thumbnails;

use crate::experiments::manipulate::ManipulationRecord;
use crate::experiments::stats::{all_stats, StatsFile};
use crate::names::Named;
use crate::record::PathRecord;
use crate::roles::NeuronRecord;
use anyhow::{bail, Result};
pub use check::{check, Names};
use maud::{html, DOCTYPE};
use palette::Palette;
use std::path::PathBuf;

/// What the page is made from.
pub struct Inputs {
    /// Path records (`neuronpath paths`), one per image and method.
    pub records: Vec<PathRecord>,
    /// Removal / enhancement results (`neuronpath manipulate`); none: no such figures.
    pub manipulations: Vec<ManipulationRecord>,
    /// Class statistics (`neuronpath stats`); none: computed from `records`.
    pub stats: Option<StatsFile>,
    /// The folder the records' image keys are relative to; thumbnails are read there.
    pub images: PathBuf,
    /// Neuron descriptions (`neuronpath neurons`); none: no neuron cards.
    pub neurons: Vec<NeuronRecord>,
    /// The folder the neuron records' exemplar keys are relative to.
    pub neuron_images: PathBuf,
    /// The input files, named in the page's header.
    pub sources: Vec<String>,
}

/// The page, and what could not go into it.
pub struct Report {
    pub html: String,
    /// Why some images are shown without a thumbnail: one message per unreadable file.
    pub missing_images: Vec<String>,
    /// Images on the page.
    pub images: usize,
}

/// The model as the figures draw it.
pub struct Model {
    /// Layer labels, 1-based as in the paper's figures.
    pub layer_names: Vec<String>,
    /// Neurons per layer: the y range of the path figures.
    pub neurons: usize,
}

impl Model {
    fn from_records(records: &[PathRecord]) -> Model {
        let layers = records.iter().map(|r| r.path.layers()).max().unwrap_or(0);
        Model {
            layer_names: (1..=layers).map(|l| l.to_string()).collect(),
            neurons: records.iter().map(|r| r.neurons).max().unwrap_or(0),
        }
    }
}

/// A number in three significant digits, plain where that is short, else scientific.
pub fn number(x: f64) -> String {
    let magnitude = x.abs();
    if !x.is_finite() {
        "–".to_string()
    } else if magnitude == 0.0 {
        "0".to_string()
    } else if (1e-3..1e4).contains(&magnitude) {
        let decimals = (2 - magnitude.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.1e}")
    }
}

/// A class's name, or its index where the records carry none.
pub fn class_name(index: usize, name: &Option<String>) -> String {
    name.clone().unwrap_or_else(|| format!("class {index}"))
}

/// Class names as the path records give them (true and predicted classes).
fn class_names(records: &[PathRecord]) -> std::collections::HashMap<usize, String> {
    let named = |c: usize, n: &Option<String>| n.clone().map(|n| (c, n));
    (records.iter())
        .flat_map(|r| {
            let truth = r.label.and_then(|l| named(l, &r.label_name));
            truth
                .into_iter()
                .chain(named(r.predicted, &r.predicted_name))
        })
        .collect()
}

/// Builds the page.
pub fn render(inputs: &Inputs) -> Result<Report> {
    let records = &inputs.records;
    if records.is_empty() {
        bail!("no path records to report");
    }
    let palette = Palette::new(records.iter().map(|r| r.method));
    let model = Model::from_records(records);
    let computed;
    let stats = match &inputs.stats {
        Some(stats) => stats,
        None => {
            computed = all_stats(records)?;
            &computed
        }
    };
    let class_stats = palette
        .primary()
        .and_then(|p| stats.methods.iter().find(|s| s.method == p))
        .or(stats.methods.first());
    let views = images::ImageView::group(records, &palette);
    let thumbnails = thumbnails::load(views.iter().map(|v| v.key), &inputs.images);
    let methods = methods::section(records, &inputs.manipulations, &palette)?;
    let on_paths: std::collections::BTreeSet<(usize, usize)> =
        records.iter().flat_map(|r| r.path.neurons()).collect();
    let carded: Vec<&NeuronRecord> = (inputs.neurons.iter())
        .filter(|n| on_paths.contains(&(n.layer, n.neuron)))
        .collect();
    let described: neurons::Described = carded.iter().map(|n| (n.layer, n.neuron)).collect();
    let classes = class_stats
        .map(|s| classes::section(s, &model, &palette, &described))
        .transpose()?;
    let images = images::section(
        &views,
        &images::Cards {
            model: &model,
            palette: &palette,
            thumbnails: &thumbnails.uris,
            manipulations: images::Manipulations::new(&inputs.manipulations),
            described: &described,
        },
    )?;
    let exemplars = (carded.iter()).flat_map(|n| n.top.iter().map(|e| e.image.as_str()));
    let exemplar_thumbnails = thumbnails::load(exemplars, &inputs.neuron_images);
    let names = class_names(records);
    let neuron_cards = (!carded.is_empty()).then(|| {
        let cards = neurons::Cards {
            thumbnails: &exemplar_thumbnails.uris,
            names: &names,
        };
        neurons::section(&carded, &cards)
    });
    let distinct = |field: &dyn Fn(&PathRecord) -> String| {
        let values: std::collections::BTreeSet<String> = records.iter().map(field).collect();
        values.into_iter().collect::<Vec<_>>().join(", ")
    };
    let models = distinct(&|r| r.model.clone());
    let scoring = distinct(&|r| {
        format!(
            "{} form, {} integration with m = {}, {} arithmetic",
            r.score_form,
            r.integration,
            r.steps,
            r.compat.name()
        )
    });
    let units = distinct(&|r| match r.sites.first() {
        Some(site) => site.to_string().replacen("blocks.0.", "blocks.N.", 1),
        None => "blocks.N.mlp.post@cls".into(),
    });
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "neuronpath report" }
                style { (maud::PreEscaped(include_str!("style.css"))) }
            }
            body {
                header {
                    h1 { "Influential neuron paths" }
                    p {
                        (views.len()) " images, " (records.len()) " paths; model "
                        code { (models) } "; units at " code { (units) } "; JAS " (scoring) "."
                    }
                    p.sources { "From " @for (i, s) in inputs.sources.iter().enumerate() {
                        @if i > 0 { ", " } code { (s) }
                    } "." }
                    p.legend {
                        @for m in palette.methods() {
                            span.swatch style={ "background:" (palette.css(*m)) } {} (m) " "
                        }
                    }
                    nav {
                        a href="#methods" { "Methods" } " · "
                        @if classes.is_some() { a href="#classes" { "Classes" } " · " }
                        a href="#images" { "Images" }
                        @if neuron_cards.is_some() { " · " a href="#neurons" { "Neurons" } }
                    }
                }
                (methods)
                @if let Some(classes) = &classes { (classes) }
                (images)
                @if let Some(cards) = &neuron_cards { (cards) }
            }
        }
    };
    Ok(Report {
        html: page.into_string(),
        missing_images: thumbnails.missing,
        images: views.len(),
    })
}
