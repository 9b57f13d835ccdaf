//! The per-class section: for each class the paper's "preferred path" picture (how
//! often each neuron of each layer lies on the class's paths), the class path (the
//! most frequent neuron per layer) and the classes whose maps are most and least
//! like it. One method's paths: the paper's method when present.

use super::figures::{frequency_map, map_axes};
use super::neurons::{link, Described};
use super::palette::Palette;
use super::{class_name, number, Model};
use crate::experiments::stats::{ClassStats, PathStats};
use anyhow::Result;
use maud::{html, Markup};

pub fn section(
    stats: &PathStats,
    model: &Model,
    palette: &Palette,
    described: &Described,
) -> Result<Markup> {
    let axes = map_axes(&model.layer_names, stats.neurons)?;
    let colour = palette.colour(stats.method);
    let name_of = |class: usize| {
        let name = stats
            .classes
            .iter()
            .find(|c| c.class == class)
            .and_then(|c| c.name.clone());
        class_name(class, &name)
    };
    let maps: Vec<Markup> = stats
        .classes
        .iter()
        .enumerate()
        .map(|(row, class)| {
            let figure = frequency_map(
                &model.layer_names,
                stats.neurons,
                &class.frequency,
                class.images,
                &class.class_path,
                colour,
            )?;
            let similarity = |other: Option<usize>| {
                other.map(|o| {
                    let column = stats.classes.iter().position(|c| c.class == o);
                    let cosine = column.map_or(f64::NAN, |j| stats.similarity[row][j]);
                    format!("{} (cosine {})", name_of(o), number(cosine))
                })
            };
            Ok(html! {
                figure.class-map data-class=(class.class) data-method=(stats.method) {
                    (figure)
                    figcaption {
                        b { (name_of(class.class)) } " · " (class.images) " paths · "
                        a href={ "#" (super::images::anchor(Some(class.class))) } { "images" }
                        br;
                        "class path: " (class_path(class, described))
                        @if let Some(most) = similarity(class.most_similar) { br; "most similar: " (most) }
                        @if let Some(least) = similarity(class.least_similar) { br; "least similar: " (least) }
                    }
                }
            })
        })
        .collect::<Result<_>>()?;
    Ok(html! {
        section #classes {
            (axes)
            h2 { "Classes " span.count { "(" (stats.method) " paths)" } }
            p.note {
                "Per class (the class each path explains) and layer, every neuron on some of "
                "the class's paths; a marker's area grows with the share of paths through it. "
                "The black line is the class path, the most frequent neuron of each layer; "
                "the percentage after each of its neurons is that share. Similarity is the "
                "cosine of two classes' maps."
            }
            div.figures { @for m in &maps { (m) } }
        }
    })
}

/// "L1 409 (35%) · L2 317 (20%) · …", each neuron linked to its card when it has one.
fn class_path(class: &ClassStats, described: &Described) -> Markup {
    html! {
        @for (l, (&n, share)) in class.class_path.iter().zip(&class.concentration).enumerate() {
            @if l > 0 { " · " }
            "L" (l + 1) " " (link(described, l, n)) (format!(" ({:.0}%)", 100.0 * share))
        }
    }
}
