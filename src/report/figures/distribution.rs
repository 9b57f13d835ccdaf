//! How the methods compare across images: box plots of per-image values (JAS,
//! probability change) and bars of per-method rates (accuracy change).

use super::{at, plot_error, svg, Chart, Frame, LABEL_PX};
use crate::attribution::Method;
use anyhow::Result;
use maud::Markup;
use plotters::prelude::*;

/// One method's values.
pub struct Group {
    pub method: Method,
    pub colour: RGBColor,
    pub values: Vec<f64>,
}

/// Height, and width per method (room for its name under the axis).
const HEIGHT: u32 = 190;
const SLOT_WIDTH: u32 = 64;
/// Half the width of a box or bar, in pixels.
const HALF_WIDTH: i32 = 12;

/// Tukey's box: quartiles (linear interpolation), whiskers to the most extreme values
/// within 1.5 IQR of the box, and the values beyond them.
struct BoxStats {
    q1: f64,
    median: f64,
    q3: f64,
    low: f64,
    high: f64,
    outliers: Vec<f64>,
}

impl BoxStats {
    /// `None` when there are no finite values.
    fn new(values: &[f64]) -> Option<BoxStats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            let rank = q * (v.len() - 1) as f64;
            let (i, frac) = (rank.floor() as usize, rank.fract());
            v[i] + (v[(i + 1).min(v.len() - 1)] - v[i]) * frac
        };
        let (q1, median, q3) = (quantile(0.25), quantile(0.5), quantile(0.75));
        let reach = 1.5 * (q3 - q1);
        let inside = |x: &&f64| **x >= q1 - reach && **x <= q3 + reach;
        let low = *v.iter().find(inside).unwrap_or(&q1);
        let high = *v.iter().rev().find(inside).unwrap_or(&q3);
        let outliers = v
            .iter()
            .copied()
            .filter(|x| *x < low || *x > high)
            .collect();
        Some(BoxStats {
            q1,
            median,
            q3,
            low,
            high,
            outliers,
        })
    }
}

/// A y range holding every value and zero, with a little air.
fn y_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Room for the bars' value labels beyond their ends.
    let pad = if hi > lo { 0.12 * (hi - lo) } else { 1.0 };
    lo - pad..hi + pad
}

fn frame<'a>(names: &'a [String], y_desc: &'a str, y_range: std::ops::Range<f64>) -> Frame<'a> {
    Frame {
        size: (50 + SLOT_WIDTH * names.len() as u32, HEIGHT),
        x_names: names,
        x_desc: "",
        y_range,
        y_desc,
        y_grid: true,
    }
}

/// Pixel offset of value `v` from value `anchor` in slot `slot` (plotters composes
/// shapes in pixels around an anchor point; boxes need a width in pixels).
fn offset(chart: &Chart, slot: usize, anchor: f64, v: f64) -> i32 {
    chart.backend_coord(&(at(slot), v)).1 - chart.backend_coord(&(at(slot), anchor)).1
}

/// One box plot per group, side by side, in the groups' colours.
pub fn box_plots(y_desc: &str, groups: &[Group]) -> Result<Markup> {
    let names: Vec<String> = groups.iter().map(|g| g.method.to_string()).collect();
    let range = y_range(groups.iter().flat_map(|g| g.values.iter().copied()));
    svg(&frame(&names, y_desc, range), |chart| {
        for (slot, group) in groups.iter().enumerate() {
            let Some(b) = BoxStats::new(&group.values) else {
                continue;
            };
            let off = |v: f64| offset(chart, slot, b.median, v);
            let line = group.colour.stroke_width(1);
            let w = HALF_WIDTH;
            let shape = EmptyElement::at((at(slot), b.median))
                + Rectangle::new(
                    [(-w, off(b.q3)), (w, off(b.q1))],
                    group.colour.mix(0.2).filled(),
                )
                + Rectangle::new([(-w, off(b.q3)), (w, off(b.q1))], line)
                + PathElement::new(vec![(-w, 0), (w, 0)], group.colour.stroke_width(2))
                + PathElement::new(vec![(0, off(b.q3)), (0, off(b.high))], line)
                + PathElement::new(vec![(0, off(b.q1)), (0, off(b.low))], line)
                + PathElement::new(vec![(-w / 2, off(b.high)), (w / 2, off(b.high))], line)
                + PathElement::new(vec![(-w / 2, off(b.low)), (w / 2, off(b.low))], line);
            chart
                .draw_series(std::iter::once(shape))
                .map_err(plot_error)?;
            chart
                .draw_series(
                    b.outliers
                        .iter()
                        .map(|&v| Circle::new((at(slot), v), 2, group.colour.stroke_width(1))),
                )
                .map_err(plot_error)?;
        }
        Ok(())
    })
}

/// One bar per group (its single value), labelled with the value.
pub fn bars(y_desc: &str, groups: &[(Method, RGBColor, f64)]) -> Result<Markup> {
    let names: Vec<String> = groups.iter().map(|g| g.0.to_string()).collect();
    let range = y_range(groups.iter().map(|g| g.2));
    svg(&frame(&names, y_desc, range), |chart| {
        for (slot, (_, colour, value)) in groups.iter().enumerate() {
            let top = offset(chart, slot, 0.0, *value);
            let label_y = if *value >= 0.0 { top - 12 } else { top + 2 };
            let shape = EmptyElement::at((at(slot), 0.0))
                + Rectangle::new([(-HALF_WIDTH, top), (HALF_WIDTH, 0)], colour.filled())
                + Text::new(
                    format!("{value:+.1}"),
                    (-HALF_WIDTH, label_y),
                    ("sans-serif", LABEL_PX),
                );
            chart
                .draw_series(std::iter::once(shape))
                .map_err(plot_error)?;
        }
        Ok(())
    })
}
