//! One image's neuron paths across the layers: layer on x, neuron index on y, one
//! line per method. The main method's neurons carry markers that grow with their
//! contribution to the score; the other methods are thin lines to compare with
//! (markers on every line would clutter the figure and slow a long page).

use super::{layer_points, plot_error, shared_axes, svg_on_shared_axes, Frame};
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

/// The axes every path figure shows by reference; once per page, before them.
pub fn path_axes(layer_names: &[String], neurons: usize) -> Result<Markup> {
    shared_axes(
        &Frame::layers_by_neurons(SIZE, layer_names, neurons),
        AXES_ID,
    )
}

/// Marker radius in pixels: area grows with |weight|.
fn marker_radius(weight: f64) -> u32 {
    (1.5 + 4.5 * weight.abs().min(1.0).sqrt()).round() as u32
}

/// `main`'s path with contribution markers (filled: positive, hollow: negative),
/// over the `others`' paths as thin lines.
pub fn path_figure(
    layer_names: &[String],
    neurons: usize,
    main: &PathLine,
    others: &[PathLine],
) -> Result<Markup> {
    let frame = Frame::layers_by_neurons(SIZE, layer_names, neurons);
    svg_on_shared_axes(&frame, AXES_ID, |chart| {
        for line in others.iter().rev() {
            chart
                .draw_series(LineSeries::new(
                    layer_points(line.neurons),
                    line.colour.stroke_width(1),
                ))
                .map_err(plot_error)?;
        }
        let main_points = layer_points(main.neurons);
        chart
            .draw_series(LineSeries::new(
                main_points.clone(),
                main.colour.stroke_width(2),
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(main_points.into_iter().zip(&main.weight).map(|(p, &w)| {
                let style = if w >= 0.0 {
                    main.colour.filled()
                } else {
                    main.colour.stroke_width(1)
                };
                Circle::new(p, marker_radius(w), style)
            }))
            .map_err(plot_error)?;
        Ok(())
    })
}
