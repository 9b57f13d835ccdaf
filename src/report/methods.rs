//! The per-method section: the methods side by side, so that their comparison is
//! one glance: the distribution of path scores (JAS) over the images, and (with
//! manipulation results) how much removing or enhancing each method's paths moves
//! the target's probability and the accuracy.

use super::figures::{box_plots, Group};
use super::number;
use super::palette::Palette;
use crate::record::PathRecord;
use anyhow::Result;
use maud::{html, Markup};

/// Per method, the values of `value` over its records.
fn groups(
    records: &[PathRecord],
    palette: &Palette,
    value: impl Fn(&PathRecord) -> f64,
) -> Vec<Group> {
    palette
        .methods()
        .iter()
        .map(|m| Group {
            method: m.clone(),
            colour: palette.colour(m),
            values: records
                .iter()
                .filter(|r| &r.method == m)
                .map(&value)
                .collect(),
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

pub fn section(records: &[PathRecord], palette: &Palette) -> Result<Markup> {
    let jas = groups(records, palette, |r| r.score);
    let jas_figure = box_plots("JAS", &jas)?;
    Ok(html! {
        section #methods {
            h2 { "Methods" }
            p.note {
                "Box: quartiles and median; whiskers: the most extreme values within 1.5 IQR; "
                "circles: values beyond. Every path is scored with the same JAS."
            }
            div.figures {
                figure.method-figure data-figure="jas" { (jas_figure) figcaption { "JAS per image" } }
            }
            table.summary {
                tr { th { "method" } th { "paths" } th { "JAS median" } th { "JAS mean" } }
                @for g in &jas {
                    tr {
                        td { span.swatch style={ "background:" (palette.css(&g.method)) } {} (g.method) }
                        td.num { (g.values.len()) }
                        td.num { (number(median(&g.values))) }
                        td.num { (number(mean(&g.values))) }
                    }
                }
            }
        }
    })
}
