//! The page's figures, drawn with plotters into inline SVG.
//!
//! Every figure shares one frame (a discrete x axis of layers or methods, a numeric
//! y axis) so that they read alike; each kind of figure has its own file.

mod distribution;
mod frequency;
mod path;

pub use distribution::{bars, box_plots, Group};
pub use frequency::{frequency_map, map_axes};
pub use path::{path_axes, path_figure, PathLine};

use anyhow::{anyhow, Result};
use maud::{html, Markup, PreEscaped};
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;

/// A chart whose x axis is `n` named categories (layers, methods) and whose y axis is numeric.
pub type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<SegmentedCoord<RangedCoordi32>, RangedCoordf64>>;

/// What the frame of a figure shows.
pub struct Frame<'n> {
    pub size: (u32, u32),
    /// One name per x category.
    pub x_names: &'n [String],
    pub x_desc: &'n str,
    pub y_range: std::ops::Range<f64>,
    pub y_desc: &'n str,
    /// Horizontal grid lines (for values, not for neuron indices).
    pub y_grid: bool,
}

impl<'n> Frame<'n> {
    /// Layers on x, neuron indices on y: the frame of paths and frequency maps.
    pub fn layers_by_neurons(size: (u32, u32), layer_names: &'n [String], neurons: usize) -> Self {
        Frame {
            size,
            x_names: layer_names,
            x_desc: "layer",
            y_range: 0.0..neurons as f64,
            y_desc: "neuron",
            y_grid: false,
        }
    }
}

/// Label size in pixels: small figures, many of them.
pub const LABEL_PX: u32 = 10;

/// The x position of category `i`, at the middle of its slot.
pub fn at(i: usize) -> SegmentValue<i32> {
    SegmentValue::CenterOf(i as i32)
}

/// A path's points on a layers-by-neurons frame: one neuron per layer.
pub fn layer_points(neurons: &[usize]) -> Vec<(SegmentValue<i32>, f64)> {
    neurons
        .iter()
        .enumerate()
        .map(|(layer, &n)| (at(layer), n as f64))
        .collect()
}

/// A whole figure: the frame's axes, then `draw` on them.
pub fn svg(frame: &Frame, draw: impl FnOnce(&mut Chart) -> Result<()>) -> Result<Markup> {
    let content = plot(frame, true, draw)?;
    let (w, h) = frame.size;
    Ok(html! {
        svg width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } { (content) }
    })
}

/// The axes of `frame` alone, as a hidden symbol `id` that many figures on the
/// same frame show by reference: a thousand images' figures then hold only their
/// data, which keeps the page small and quick to open. Put it on the page once.
pub fn shared_axes(frame: &Frame, id: &str) -> Result<Markup> {
    let content = plot(frame, true, |_| Ok(()))?;
    let (w, h) = frame.size;
    Ok(html! {
        svg.defs {
            symbol id=(id) viewBox={ "0 0 " (w) " " (h) } { (content) }
        }
    })
}

/// A figure on the axes of `shared_axes(frame, id)`: `draw`'s data only.
pub fn svg_on_shared_axes(
    frame: &Frame,
    id: &str,
    draw: impl FnOnce(&mut Chart) -> Result<()>,
) -> Result<Markup> {
    let content = plot(frame, false, draw)?;
    let (w, h) = frame.size;
    Ok(html! {
        svg width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } {
            use href={ "#" (id) } width=(w) height=(h) {}
            (content)
        }
    })
}

/// Draws `frame` (its axes when `axes`), then `draw` on it; returns the drawing
/// without plotters' enclosing <svg> element, for the callers to place.
fn plot(
    frame: &Frame,
    axes: bool,
    draw: impl FnOnce(&mut Chart) -> Result<()>,
) -> Result<PreEscaped<String>> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, frame.size).into_drawing_area();
        let y_label_width = if frame.y_desc.is_empty() { 30 } else { 42 };
        let mut chart = ChartBuilder::on(&root)
            .margin(4)
            .margin_right(8)
            .x_label_area_size(if frame.x_desc.is_empty() { 16 } else { 28 })
            .y_label_area_size(y_label_width)
            .build_cartesian_2d(
                // An i32 range is inclusive as a discrete axis: n categories are 0..n-1.
                (0..frame.x_names.len() as i32 - 1).into_segmented(),
                frame.y_range.clone(),
            )
            .map_err(plot_error)?;
        if axes {
            draw_axes(&mut chart, frame)?;
        }
        draw(&mut chart)?;
        root.present().map_err(plot_error)?;
    }
    // plotters writes one complete SVG document; keep what is inside its root element.
    let open_end = buf.find('>').map_or(0, |i| i + 1);
    let close = buf.rfind("</svg>").unwrap_or(buf.len());
    Ok(PreEscaped(buf[open_end..close].trim().to_string()))
}

fn draw_axes(chart: &mut Chart, frame: &Frame) -> Result<()> {
    let name = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => frame.x_names.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let value = |v: &f64| tick(*v);
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_labels(frame.x_names.len())
        .x_label_formatter(&name)
        .y_labels(5)
        .y_label_formatter(&value)
        .label_style(("sans-serif", LABEL_PX))
        .axis_desc_style(("sans-serif", LABEL_PX))
        .x_desc(frame.x_desc)
        .y_desc(frame.y_desc)
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(232, 232, 232));
    if !frame.y_grid {
        mesh.disable_y_mesh();
    }
    mesh.draw().map_err(plot_error)
}

/// A tick value as short as it reads: 400, 0.5, -0.25 (not 400.0 or 0.30000000000000004).
fn tick(v: f64) -> String {
    let rounded = (v * 1e6).round() / 1e6;
    format!("{}", rounded + 0.0)
}

/// plotters' errors borrow the backend; keep the message only.
pub fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure: {e}")
}
