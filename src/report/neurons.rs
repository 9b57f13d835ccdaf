//! The per-neuron section: a card for every path neuron described by `neuronpath
//! neurons` — its top-activating images with the activation laid over them, its
//! mean activation per class as bars, and the classes its direct effect raises and
//! lowers. Image tables and class paths link to the cards (`#neuron-L-N`).

use super::number;
use crate::roles::{ClassValue, NeuronRecord};
use maud::{html, Markup};
use std::collections::{BTreeSet, HashMap};

/// Exemplars shown per card.
const SHOWN: usize = 8;

/// The id of neuron `neuron` of layer `layer` (counted from 0)'s card.
pub fn anchor(layer: usize, neuron: usize) -> String {
    format!("neuron-{layer}-{neuron}")
}

/// The cards there are, by (layer, neuron), for links.
pub type Described = BTreeSet<(usize, usize)>;

/// A neuron as the tables show it: its number, linked to its card when it has one.
pub fn link(described: &Described, layer: usize, neuron: usize) -> Markup {
    html! {
        @if described.contains(&(layer, neuron)) {
            a href={ "#" (anchor(layer, neuron)) } { (neuron) }
        } @else { (neuron) }
    }
}

/// What the cards need besides the records.
pub struct Cards<'a> {
    /// Thumbnails of the exemplars, by key; each is written once into the page's
    /// style, as a class, however many cards show it.
    pub thumbnails: &'a HashMap<String, String>,
    /// Class names, where the path records give them.
    pub names: &'a HashMap<usize, String>,
}

pub fn section(records: &[&NeuronRecord], cards: &Cards) -> Markup {
    let keys: BTreeSet<&str> = (records.iter())
        .flat_map(|r| r.top.iter().take(SHOWN).map(|e| e.image.as_str()))
        .filter(|k| cards.thumbnails.contains_key(*k))
        .collect();
    let classes: HashMap<&str, String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, format!("x{i}")))
        .collect();
    let style: String = (keys.iter())
        .map(|k| {
            format!(
                ".{}{{background-image:url({})}}\n",
                classes[k], cards.thumbnails[*k]
            )
        })
        .collect();
    html! {
        style { (maud::PreEscaped(style)) }
        section #neurons {
            h2 { "Neurons " span.count { "(" (records.len()) " on paths)" } }
            p.note {
                "Each path neuron as the dataset shows it. Exemplars: the images of largest "
                "activation, the activation at each patch laid over the image (red, scaled to "
                "the image's largest). Class profile: the mean activation per class. Direct "
                "effect: the neuron's output weights through the final norm (frozen at each "
                "exemplar's scale) and the head, per unit of activation: the classes it raises "
                "and lowers directly. It is the direct path only; what the neuron does through "
                "the later layers is not in it."
            }
            div.cards { @for r in records { (card(r, cards, &classes)) } }
        }
    }
}

fn card(r: &NeuronRecord, cards: &Cards, thumbnails: &HashMap<&str, String>) -> Markup {
    let name = |c: usize| {
        cards
            .names
            .get(&c)
            .cloned()
            .unwrap_or_else(|| format!("class {c}"))
    };
    html! {
        figure.neuron-card id=(anchor(r.layer, r.neuron)) {
            figcaption {
                b { "L" (r.layer + 1) " · neuron " (r.neuron) }
                " · " code { (r.site) } " · " (r.images) " images, ranked by " (r.ranked_by)
            }
            div.exemplars {
                @for e in r.top.iter().take(SHOWN) {
                    div.exemplar title={ (e.image) ": " (number(e.activation as f64)) } {
                        @match thumbnails.get(e.image.as_str()) {
                            Some(class) => div class={ "thumb shared " (class) } {},
                            None => div.thumb.missing { "no image" },
                        }
                        (heatmap(&e.heatmap))
                        div.act { (number(e.activation as f64)) }
                    }
                }
            }
            (profile(r, &name))
            @if let Some(d) = &r.direct_effect {
                div.direct {
                    "direct effect only · raises: " (classes(&d.promotes, &name))
                    br;
                    "lowers: " (classes(&d.suppresses, &name))
                }
            }
        }
    }
}

/// The activation at each patch as a red overlay for the thumbnail (a PNG of the
/// patch grid, opacity scaled to the image's largest activation, smoothed by the
/// browser when scaled up).
fn heatmap(grid: &[Vec<f32>]) -> Markup {
    let (rows, cols) = (grid.len(), grid.first().map_or(0, Vec::len));
    let top = grid.iter().flatten().fold(0f32, |m, v| m.max(*v));
    let rgba: Vec<u8> = (grid.iter().flatten())
        .flat_map(|&v| {
            let alpha = if top > 0.0 {
                (0.8 * 255.0 * v.max(0.0) / top) as u8
            } else {
                0
            };
            [214, 39, 40, alpha]
        })
        .collect();
    let uri = super::thumbnails::png_uri(cols, rows, png::ColorType::Rgba, &rgba);
    html! {
        @if let (Ok(uri), true) = (uri, rows * cols > 0) { img.heat src=(uri) alt="";  }
    }
}

/// The mean activation per class as bars, positive to the right of the axis.
fn profile(r: &NeuronRecord, name: &dyn Fn(usize) -> String) -> Markup {
    let largest = r
        .class_mean
        .iter()
        .flatten()
        .fold(0f32, |m, v| m.max(v.abs()));
    let width = |v: f32, sign: f32| {
        let w = if largest > 0.0 && v * sign > 0.0 {
            100.0 * v.abs() / largest
        } else {
            0.0
        };
        format!("width:{w:.1}%")
    };
    html! {
        table.profile {
            @for (c, mean) in r.class_mean.iter().enumerate() {
                @if let Some(m) = mean {
                    tr {
                        td { (name(c)) }
                        td.bar {
                            span.half.left { span.neg style=(width(*m, -1.0)) {} }
                            span.half { span.pos style=(width(*m, 1.0)) {} }
                        }
                        td.num { (number(*m as f64)) }
                    }
                }
            }
        }
    }
}

fn classes(list: &[ClassValue], name: &dyn Fn(usize) -> String) -> Markup {
    html! {
        @for (i, c) in list.iter().enumerate() {
            @if i > 0 { ", " }
            (name(c.class)) " (" (number(c.value as f64)) ")"
        }
    }
}
