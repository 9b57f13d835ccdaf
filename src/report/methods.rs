//! The per-method section: the methods side by side, so that their comparison is
//! one glance: the distribution of path scores (JAS) over the images, and (with
//! manipulation results) how much removing or enhancing each method's paths moves
//! the target's probability and the accuracy.

use super::figures::{bars, box_plots, Group};
use super::number;
use super::palette::Palette;
use crate::attribution::Method;
use crate::experiments::manipulate::{summarize, ManipulationRecord, ManipulationSummary, Op};
use crate::experiments::stats::{mean, median};
use crate::record::PathRecord;
use anyhow::Result;
use maud::{html, Markup};

/// Per method, the values of `value` over its `items`.
fn groups<T>(
    items: &[T],
    palette: &Palette,
    method: impl Fn(&T) -> Method,
    value: impl Fn(&T) -> f64,
) -> Vec<Group> {
    palette
        .methods()
        .iter()
        .map(|&m| Group {
            method: m,
            colour: palette.colour(m),
            values: items
                .iter()
                .filter(|r| method(r) == m)
                .map(&value)
                .collect(),
        })
        .collect()
}

/// The operations in `manipulations`, in order of first appearance.
pub fn operations(manipulations: &[ManipulationRecord]) -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    for m in manipulations {
        if !ops.contains(&m.op) {
            ops.push(m.op);
        }
    }
    ops
}

/// One figure with its caption and a testable name.
fn figure(name: &str, svg: Markup, caption: &str) -> Markup {
    html! {
        figure.method-figure data-figure=(name) { (svg) figcaption { (caption) } }
    }
}

pub fn section(
    records: &[PathRecord],
    manipulations: &[ManipulationRecord],
    palette: &Palette,
) -> Result<Markup> {
    let jas = groups(records, palette, |r| r.method, |r| r.score);
    let mut figures = vec![figure("jas", box_plots("JAS", &jas)?, "JAS per image")];
    let ops = operations(manipulations);
    let summaries = summarize(manipulations);
    let summary = |method: Method, op: Op| -> Option<&ManipulationSummary> {
        summaries.iter().find(|s| s.method == method && s.op == op)
    };
    for &op in &ops {
        let changes: Vec<(Method, f64)> = manipulations
            .iter()
            .filter(|m| m.op == op)
            .filter_map(|m| Some((m.method, 100.0 * m.prob_change()?)))
            .collect();
        let change = groups(&changes, palette, |c| c.0, |c| c.1);
        figures.push(figure(
            &format!("probability-{op}"),
            box_plots("Δp (%)", &change)?,
            &format!("{op}: target probability change per image"),
        ));
        let accuracy: Vec<_> = palette
            .methods()
            .iter()
            .filter_map(|&m| {
                summary(m, op).map(|s| (m, palette.colour(m), 100.0 * s.accuracy_deviation))
            })
            .collect();
        figures.push(figure(
            &format!("accuracy-{op}"),
            bars("Δ accuracy (points)", &accuracy)?,
            &format!("{op}: accuracy change"),
        ));
    }
    Ok(html! {
        section #methods {
            h2 { "Methods" }
            p.note {
                "Box: quartiles and median; whiskers: the most extreme values within 1.5 IQR; "
                "circles: values beyond. Every path is scored with the same JAS. "
                @if !ops.is_empty() {
                    "Δp is p(target) after the operation over p before, less 1; "
                    "Δ accuracy is top-1 accuracy after less before, in percentage points. "
                    "remove sets the path's neurons to 0, enhance doubles them."
                }
            }
            div.figures { @for f in &figures { (f) } }
            table.summary {
                tr {
                    th { "method" } th { "paths" } th { "JAS median" } th { "JAS mean" }
                    @for op in &ops { th { "Δp " (op) " (mean)" } th { "accuracy " (op) } }
                }
                @for g in &jas {
                    tr {
                        td { span.swatch style={ "background:" (palette.css(g.method)) } {} (g.method) }
                        td.num { (g.values.len()) }
                        td.num { (number(median(&g.values))) }
                        td.num { (number(mean(&g.values))) }
                        @for &op in &ops {
                            @match summary(g.method, op) {
                                Some(s) => {
                                    td.num { (format!("{:+.1}%", 100.0 * s.prob_deviation)) }
                                    td.num { (format!("{:.1}% → {:.1}%", 100.0 * s.accuracy_before, 100.0 * s.accuracy_after)) }
                                }
                                None => { td {} td {} }
                            }
                        }
                    }
                }
            }
        }
    })
}
