//! PIL's `Image.resize(size, BILINEAR | BICUBIC)`: a separable, antialiased filter
//! (triangle, or Keys' cubic with a = -0.5) in 22-bit fixed point, horizontal pass
//! then vertical, each rounded to 8 bits. torchvision's `Resize` and Hugging Face's
//! image processors on a PIL image call exactly this.

use super::decode::RgbImage;
use crate::model::Filter;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index and fixed-point weights.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// The filter's support (in input pixels at scale 1) and its kernel.
fn kernel(filter: Filter) -> (f64, fn(f64) -> f64) {
    match filter {
        Filter::Bilinear => (1.0, |t| if t < 1.0 { 1.0 - t } else { 0.0 }),
        Filter::Bicubic => (2.0, |t| {
            const A: f64 = -0.5;
            if t < 1.0 {
                ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
            } else if t < 2.0 {
                (((t - 5.0) * t + 8.0) * t - 4.0) * A
            } else {
                0.0
            }
        }),
    }
}

fn taps(in_size: usize, out_size: usize, filter: Filter) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let (base, k) = kernel(filter);
    let support = base * filter_scale; // stretched when shrinking
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let w: Vec<f64> = (xmin..xmax)
            .map(|x| k(((x as f64 - center + 0.5) / filter_scale).abs()))
            .collect();
        let total: f64 = w.iter().sum();
        let fixed = w
            .iter()
            .map(|&v| {
                let k = if total != 0.0 { v / total } else { v };
                let scaled = k * (1u32 << PRECISION_BITS) as f64;
                (if k < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
            })
            .collect();
        start.push(xmin);
        weights.push(fixed);
    }
    Taps { start, weights }
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Bilinear resize to `width x height`; the same size returns the image unchanged, as PIL.
pub fn resize_bilinear(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    resize(img, width, height, Filter::Bilinear)
}

/// Resizes to `width x height` with `filter`; the same size returns the image unchanged.
pub fn resize(img: &RgbImage, width: usize, height: usize, filter: Filter) -> RgbImage {
    let mut current = img.clone();
    if width != current.width {
        let t = taps(current.width, width, filter);
        let mut out = vec![0u8; width * current.height * 3];
        for y in 0..current.height {
            let row = &current.pixels[y * current.width * 3..];
            for x in 0..width {
                for c in 0..3 {
                    let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                    for (i, &w) in t.weights[x].iter().enumerate() {
                        acc += row[(t.start[x] + i) * 3 + c] as i32 * w;
                    }
                    out[(y * width + x) * 3 + c] = clip8(acc);
                }
            }
        }
        current = RgbImage {
            width,
            height: current.height,
            pixels: out,
        };
    }
    if height != current.height {
        let t = taps(current.height, height, filter);
        let w3 = current.width * 3;
        let mut out = vec![0u8; w3 * height];
        for y in 0..height {
            for i in 0..w3 {
                let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                for (k, &w) in t.weights[y].iter().enumerate() {
                    acc += current.pixels[(t.start[y] + k) * w3 + i] as i32 * w;
                }
                out[y * w3 + i] = clip8(acc);
            }
        }
        current = RgbImage {
            width: current.width,
            height,
            pixels: out,
        };
    }
    current
}
