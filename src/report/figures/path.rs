//! One image's neuron paths across the layers: layer on x, neuron index on y, one
//! line per method. The main method's neurons carry markers that grow with their
//! contribution to the score; the other methods are thin lines to compare with
//! (markers on every line would clutter the figure and slow a long page).

use super::{at, shared_axes, svg_on_shared_axes, Frame};
use anyhow::Result;
use maud::Markup;
use plotters::prelude::*;

/// One method's path through the layers.
pub struct PathLine<'a> {
    /// Neuron index per layer.
    pub neurons: &'a [usize],
    /// Per layer: the neuron's contribution to the score (activation x gradient) as
    /// a signed fraction of the largest in the figure, in [-1, 1].
    pub weight: Vec<f64>,
    pub colour: RGBColor,
}

const SIZE: (u32, u32) = (280, 150);
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

/// Marker radius in pixels: area grows with |weight|.
fn marker_radius(weight: f64) -> u32 {
    (1.5 + 4.5 * weight.abs().min(1.0).sqrt()).round() as u32
}

fn points(line: &PathLine) -> Vec<(SegmentValue<i32>, f64)> {
    line.neurons
        .iter()
        .enumerate()
        .map(|(layer, &n)| (at(layer), n as f64))
        .collect()
}

/// `main`'s path with contribution markers (filled: positive, hollow: negative),
/// over the `others`' paths as thin lines.
pub fn path_figure(
    layer_names: &[String],
    neurons: usize,
    main: &PathLine,
    others: &[PathLine],
) -> Result<Markup> {
    svg_on_shared_axes(&frame(layer_names, neurons), AXES_ID, |chart| {
        for line in others.iter().rev() {
            chart
                .draw_series(LineSeries::new(points(line), line.colour.stroke_width(1)))
                .map_err(super::plot_error)?;
        }
        chart
            .draw_series(LineSeries::new(points(main), main.colour.stroke_width(2)))
            .map_err(super::plot_error)?;
        chart
            .draw_series(points(main).into_iter().zip(&main.weight).map(|(p, &w)| {
                let style = if w >= 0.0 {
                    main.colour.filled()
                } else {
                    main.colour.stroke_width(1)
                };
                Circle::new(p, marker_radius(w), style)
            }))
            .map_err(super::plot_error)?;
        Ok(())
    })
}
