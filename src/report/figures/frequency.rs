//! A class's preferred path (the paper's frequency picture): for each layer, every
//! neuron that some of the class's paths pass through, its marker growing with how
//! many do; the class path (most frequent neuron per layer) drawn over it.

use super::{at, layer_points, plot_error, shared_axes, svg_on_shared_axes, Frame};
use anyhow::Result;
use maud::Markup;
use plotters::prelude::*;

const SIZE: (u32, u32) = (300, 190);
const AXES_ID: &str = "map-axes";

/// The axes every frequency map shows by reference; once per page, before them.
pub fn map_axes(layer_names: &[String], neurons: usize) -> Result<Markup> {
    shared_axes(
        &Frame::layers_by_neurons(SIZE, layer_names, neurons),
        AXES_ID,
    )
}

/// `frequency[layer]` lists `(neuron, paths through it)`; `images` is the class's
/// number of paths, so a marker at full size means every path.
pub fn frequency_map(
    layer_names: &[String],
    neurons: usize,
    frequency: &[Vec<(usize, usize)>],
    images: usize,
    class_path: &[usize],
    colour: RGBColor,
) -> Result<Markup> {
    let radius = |count: usize| {
        let share = count as f64 / images.max(1) as f64;
        (1.0 + 7.0 * share.sqrt()).round() as u32
    };
    let frame = Frame::layers_by_neurons(SIZE, layer_names, neurons);
    svg_on_shared_axes(&frame, AXES_ID, |chart| {
        chart
            .draw_series(frequency.iter().enumerate().flat_map(|(layer, counts)| {
                counts.iter().map(move |&(neuron, count)| {
                    Circle::new(
                        (at(layer), neuron as f64),
                        radius(count),
                        colour.mix(0.35).filled(),
                    )
                })
            }))
            .map_err(plot_error)?;
        let class_path = layer_points(class_path);
        chart
            .draw_series(LineSeries::new(class_path.clone(), BLACK.stroke_width(1)))
            .map_err(plot_error)?;
        chart
            .draw_series(
                class_path
                    .into_iter()
                    .map(|p| Circle::new(p, 2, BLACK.filled())),
            )
            .map_err(plot_error)?;
        Ok(())
    })
}
