//! One image's neuron paths across the layers: layer on x, neuron index on y, one
//! line per method; each neuron's marker grows with its contribution to the score.

use super::{at, shared_axes, svg_on_shared_axes, Frame};
use anyhow::Result;
use maud::Markup;
use plotters::prelude::*;

/// One method's path through the layers.
pub struct PathLine<'a> {
    /// Neuron index per layer.
    pub neurons: &'a [usize],
    /// Per layer: the neuron's own share of the path's score (activation x gradient).
    pub contribution: &'a [f64],
    pub colour: RGBColor,
}

const SIZE: (u32, u32) = (260, 150);
const AXES_ID: &str = "path-axes";

fn frame(layer_names: &[String], neurons: usize) -> Frame<'_> {
    Frame {
        size: SIZE,
        x_names: layer_names,
        x_desc: "layer",
        y_range: 0.0..neurons as f64,
        y_desc: "neuron",
        y_grid: false,
    }
}

/// The axes every path figure shows by reference; once per page, before them.
pub fn path_axes(layer_names: &[String], neurons: usize) -> Result<Markup> {
    shared_axes(&frame(layer_names, neurons), AXES_ID)
}

/// Marker radius in pixels: area grows with |contribution| relative to the largest
/// in the figure, so methods compare within an image.
fn marker_radius(contribution: f64, largest: f64) -> u32 {
    let share = if largest > 0.0 {
        (contribution.abs() / largest).min(1.0)
    } else {
        0.0
    };
    (1.5 + 4.5 * share.sqrt()).round() as u32
}

/// `lines` in display order: the first is drawn last, on top. Positive contributions
/// are filled markers, negative ones hollow.
pub fn path_figure(layer_names: &[String], neurons: usize, lines: &[PathLine]) -> Result<Markup> {
    let largest = lines
        .iter()
        .flat_map(|l| l.contribution)
        .fold(0.0f64, |m, c| m.max(c.abs()));
    svg_on_shared_axes(&frame(layer_names, neurons), AXES_ID, |chart| {
        for line in lines.iter().rev() {
            let points: Vec<(SegmentValue<i32>, f64)> = line
                .neurons
                .iter()
                .enumerate()
                .map(|(layer, &n)| (at(layer), n as f64))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), line.colour.stroke_width(1)))
                .map_err(super::plot_error)?;
            chart
                .draw_series(points.into_iter().zip(line.contribution).map(|(p, &c)| {
                    let style = if c >= 0.0 {
                        line.colour.filled()
                    } else {
                        line.colour.stroke_width(1)
                    };
                    Circle::new(p, marker_radius(c, largest), style)
                }))
                .map_err(super::plot_error)?;
        }
        Ok(())
    })
}
