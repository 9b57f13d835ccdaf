//! The per-image section: for each image its thumbnail, true and predicted class,
//! every method's path drawn across the layers with its score and per-layer
//! contributions, and (when there are manipulation results) what removing or
//! enhancing the path did to the target's probability.

use super::figures::{path_axes, path_figure, PathLine};
use super::neurons::{link, Described};
use super::palette::Palette;
use super::{class_name, number, Model};
use crate::attribution::Method;
use crate::experiments::manipulate::{ManipulationRecord, Op};
use crate::record::PathRecord;
use anyhow::Result;
use maud::{html, Markup};
use std::collections::HashMap;

/// Manipulation results by image, method and operation.
pub struct Manipulations<'a> {
    by_key: HashMap<String, &'a ManipulationRecord>,
    /// The operations present, in order of first appearance.
    pub ops: Vec<Op>,
}

impl<'a> Manipulations<'a> {
    pub fn new(records: &'a [ManipulationRecord]) -> Manipulations<'a> {
        Manipulations {
            by_key: records
                .iter()
                .map(|m| (ManipulationRecord::key_of(&m.image, m.method, m.op), m))
                .collect(),
            ops: super::methods::operations(records),
        }
    }

    fn get(&self, image: &str, method: Method, op: Op) -> Option<&'a ManipulationRecord> {
        self.by_key
            .get(&ManipulationRecord::key_of(image, method, op))
            .copied()
    }
}

/// The id of the heading over the images of true class `label`.
pub fn anchor(label: Option<usize>) -> String {
    match label {
        Some(l) => format!("class-{l}-images"),
        None => "unlabelled-images".to_string(),
    }
}

/// One image and its records, one per method, in display order.
pub struct ImageView<'a> {
    pub key: &'a str,
    pub records: Vec<&'a PathRecord>,
}

impl<'a> ImageView<'a> {
    /// Groups records by image, images in the order they first appear.
    pub fn group(records: &'a [PathRecord], palette: &Palette) -> Vec<ImageView<'a>> {
        let mut views: Vec<ImageView> = Vec::new();
        let mut index = HashMap::new();
        for r in records {
            let i = *index.entry(r.image.as_str()).or_insert_with(|| {
                views.push(ImageView {
                    key: &r.image,
                    records: vec![],
                });
                views.len() - 1
            });
            views[i].records.push(r);
        }
        for view in &mut views {
            view.records.sort_by_key(|r| palette.rank(r.method));
        }
        views
    }

    /// The facts shared by every method's record of the image.
    fn first(&self) -> &PathRecord {
        self.records[0]
    }
}

/// What the image cards are drawn from, besides the images' own records.
pub struct Cards<'a> {
    pub model: &'a Model,
    pub palette: &'a Palette,
    /// PNG data URIs by image key.
    pub thumbnails: &'a HashMap<String, String>,
    pub manipulations: Manipulations<'a>,
    /// The neurons with a card, which the tables link to.
    pub described: &'a Described,
}

/// The image section, grouped under one heading per true class.
pub fn section(views: &[ImageView], cards: &Cards) -> Result<Markup> {
    let (model, manipulations) = (cards.model, &cards.manipulations);
    let mut groups: Vec<(Option<usize>, Vec<&ImageView>)> = Vec::new();
    for view in views {
        let label = view.first().label;
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, members)) => members.push(view),
            None => groups.push((label, vec![view])),
        }
    }
    let mut blocks = Vec::new();
    for (label, members) in &groups {
        let heading = match label {
            Some(l) => class_name(*l, &members[0].first().label_name),
            None => "unlabelled".to_string(),
        };
        let figures: Vec<Markup> = members
            .iter()
            .map(|v| card(v, cards))
            .collect::<Result<_>>()?;
        blocks.push(html! {
            h3 id=(anchor(*label)) { (heading) " " span.count { "(" (members.len()) ")" } }
            div.cards { @for f in &figures { (f) } }
        });
    }
    let axes = path_axes(&model.layer_names, model.neurons)?;
    Ok(html! {
        section #images {
            (axes)
            h2 { "Images" }
            p.note {
                "Each image's paths: layer on x, neuron index on y, one line per method. "
                "On the thick line (" (cards.palette.primary().map(|m| m.to_string()).unwrap_or_default()) ") a marker's area grows with "
                "the neuron's contribution (activation \u{d7} mean gradient) relative to the largest "
                "of the image's paths; hollow markers contribute negatively. The table gives each "
                "path's JAS and per layer its neuron, shaded the same way (orange: positive, grey: "
                "negative; hover for the value; a top-K path lists its K neurons as a+b+c and is "
                "drawn through the first)"
                @if !manipulations.ops.is_empty() {
                    "; then p(target) after each operation on the path (red: the prediction changed)"
                }
                "."
            }
            @for b in &blocks { (b) }
        }
    })
}

fn card(view: &ImageView, cards: &Cards) -> Result<Markup> {
    let (model, palette, manipulations) = (cards.model, cards.palette, &cards.manipulations);
    let first = view.first();
    let largest = view
        .records
        .iter()
        .flat_map(|r| &r.contribution)
        .fold(0.0f64, |m, c| m.max(c.abs()));
    let weight = |c: f64| if largest > 0.0 { c / largest } else { 0.0 };
    // A top-K path is drawn through the first (best) neuron of each layer.
    let drawn: Vec<Vec<usize>> = view
        .records
        .iter()
        .map(|r| {
            r.path
                .0
                .iter()
                .map(|ns| ns.first().copied().unwrap_or_default())
                .collect()
        })
        .collect();
    let lines: Vec<PathLine> = view
        .records
        .iter()
        .zip(&drawn)
        .map(|(r, drawn)| PathLine {
            neurons: drawn,
            weight: r.contribution.iter().map(|&c| weight(c)).collect(),
            colour: palette.colour(r.method),
        })
        .collect();
    let figure = path_figure(&model.layer_names, model.neurons, &lines[0], &lines[1..])?;
    let truth = first.label.map(|l| class_name(l, &first.label_name));
    let predicted = class_name(first.predicted, &first.predicted_name);
    let correct = first.label.map(|l| l == first.predicted);
    let target_prob = format!(" (p {})", number(first.target_prob as f64));
    Ok(html! {
        figure.path-figure data-image=(view.key) {
            div.head {
                div.facts {
                    @match cards.thumbnails.get(view.key) {
                        Some(uri) => img.thumb src=(uri) alt=(view.key);,
                        None => div.thumb.missing { "no image" },
                    }
                    div.key { (view.key) }
                    @if let Some(truth) = &truth {
                        div { "true: " b { (truth) } @if first.label == Some(first.target) { (target_prob) } }
                    }
                    div.wrong[correct == Some(false)] {
                        "predicted: " b { (predicted) } " (p " (number(first.predicted_prob as f64)) ")"
                    }
                    @if first.label != Some(first.target) && first.predicted != first.target {
                        div { "explained: class " (first.target) (target_prob) }
                    }
                }
                (figure)
            }
            table.path-table {
                tr {
                    th { "method" } th { "JAS" }
                    @for name in &model.layer_names {
                        th title="neuron; shade: contribution, hover for its value" { "L" (name) }
                    }
                    @for op in &manipulations.ops { th title="p(target) after the operation" { (op) } }
                }
                @for (r, line) in view.records.iter().zip(&lines) {
                    tr {
                        td { span.swatch style={ "background:" (palette.css(r.method)) } {} (r.method) }
                        td { (number(r.score)) }
                        @for (layer, ((ns, c), w)) in r.path.0.iter().zip(&r.contribution).zip(&line.weight).enumerate() {
                            td class=[shade(*w)] title=(number(*c)) { (neuron_list(layer, ns, cards.described)) }
                        }
                        @for op in &manipulations.ops {
                            @match manipulations.get(view.key, r.method, *op) {
                                Some(m) => td.flipped[m.predicted_after != m.predicted_before] {
                                    (number(m.prob_after as f64))
                                },
                                None => td {},
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A layer's neurons as the table shows them: `409`, or `409+413+278` (top-K),
/// each linked to its neuron card when it has one.
fn neuron_list(layer: usize, neurons: &[usize], described: &Described) -> Markup {
    html! {
        @for (i, &n) in neurons.iter().enumerate() {
            @if i > 0 { "+" }
            (link(described, layer, n))
        }
    }
}

/// The CSS class shading a table cell for a contribution of signed `weight`
/// (fraction of the image's largest): `p1`..`p5` positive, `n1`..`n5` negative,
/// darker with |weight| (classes, not inline colours: a thousand tables stay small).
fn shade(weight: f64) -> Option<String> {
    let level = (5.0 * weight.abs().min(1.0).sqrt()).round() as u32;
    match level {
        0 => None,
        l if weight >= 0.0 => Some(format!("p{l}")),
        l => Some(format!("n{l}")),
    }
}
