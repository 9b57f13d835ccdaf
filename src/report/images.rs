//! The per-image section: for each image its thumbnail, true and predicted class,
//! every method's path drawn across the layers with its score and per-layer
//! contributions, and (when there are manipulation results) what removing or
//! enhancing the path did to the target's probability.

use super::figures::{path_axes, path_figure, PathLine};
use super::palette::Palette;
use super::{number, Model};
use crate::record::PathRecord;
use anyhow::Result;
use maud::{html, Markup};

/// One image and its records, one per method, in display order.
pub struct ImageView<'a> {
    pub key: &'a str,
    pub records: Vec<&'a PathRecord>,
}

impl<'a> ImageView<'a> {
    /// Groups records by image, images in the order they first appear.
    pub fn group(records: &'a [PathRecord], palette: &Palette) -> Vec<ImageView<'a>> {
        let mut views: Vec<ImageView> = Vec::new();
        let mut index = std::collections::HashMap::new();
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
            view.records.sort_by_key(|r| palette.rank(&r.method));
        }
        views
    }

    /// The facts shared by every method's record of the image.
    fn first(&self) -> &PathRecord {
        self.records[0]
    }
}

fn class_name(index: usize, name: &Option<String>) -> String {
    name.clone().unwrap_or_else(|| format!("class {index}"))
}

/// The image section, grouped under one heading per true class.
pub fn section(
    views: &[ImageView],
    model: &Model,
    palette: &Palette,
    thumbnail: &dyn Fn(&str) -> Option<String>,
) -> Result<Markup> {
    let mut groups: Vec<(String, Vec<&ImageView>)> = Vec::new();
    for view in views {
        let first = view.first();
        let heading = match first.label {
            Some(l) => class_name(l, &first.label_name),
            None => "unlabelled".to_string(),
        };
        match groups.iter_mut().find(|(h, _)| *h == heading) {
            Some((_, members)) => members.push(view),
            None => groups.push((heading, vec![view])),
        }
    }
    let mut cards = Vec::new();
    for (heading, members) in &groups {
        let figures: Vec<Markup> = members
            .iter()
            .map(|v| card(v, model, palette, thumbnail))
            .collect::<Result<_>>()?;
        cards.push(html! {
            h3 id={ "images-" (heading) } { (heading) " " span.count { "(" (members.len()) ")" } }
            div.cards { @for f in &figures { (f) } }
        });
    }
    let axes = path_axes(&model.layer_names, model.neurons)?;
    Ok(html! {
        section #images {
            (axes)
            h2 { "Images" }
            p.note {
                "Each image's path: layer on x, neuron index on y, one line per method. "
                "A marker's area grows with the neuron's contribution (activation \u{d7} mean gradient) "
                "relative to the largest in the figure; hollow markers contribute negatively. "
                "The table gives each path's JAS and, per layer, the neuron and its contribution."
            }
            @for c in &cards { (c) }
        }
    })
}

fn card(
    view: &ImageView,
    model: &Model,
    palette: &Palette,
    thumbnail: &dyn Fn(&str) -> Option<String>,
) -> Result<Markup> {
    let first = view.first();
    let lines: Vec<PathLine> = view
        .records
        .iter()
        .map(|r| PathLine {
            neurons: &r.path,
            contribution: &r.contribution,
            colour: palette.colour(&r.method),
        })
        .collect();
    let figure = path_figure(&model.layer_names, model.neurons, &lines)?;
    let truth = first.label.map(|l| class_name(l, &first.label_name));
    let predicted = class_name(first.predicted, &first.predicted_name);
    let correct = first.label.map(|l| l == first.predicted);
    let target_prob = format!(" (p {})", number(first.target_prob as f64));
    Ok(html! {
        figure.path-figure data-image=(view.key) {
            div.head {
                @match thumbnail(view.key) {
                    Some(uri) => img.thumb src=(uri) alt=(view.key);,
                    None => div.thumb.missing { "no image" },
                }
                div.facts {
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
            }
            (figure)
            table.path-table {
                tr {
                    th { "method" } th { "JAS" }
                    @for name in &model.layer_names { th { "L" (name) } }
                }
                @for r in &view.records {
                    tr {
                        td { span.swatch style={ "background:" (palette.css(&r.method)) } {} (r.method) }
                        td.num { (number(r.score)) }
                        @for (n, c) in r.path.iter().zip(&r.contribution) {
                            td.num { (n) br; small { (number(*c)) } }
                        }
                    }
                }
            }
        }
    })
}
