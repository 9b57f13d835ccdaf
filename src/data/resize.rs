//! PIL's `Image.resize(size, BILINEAR)`: a separable, antialiased triangle filter
//! in 22-bit fixed point, horizontal pass then vertical, each rounded to 8 bits.
//! torchvision's `Resize` on a PIL image calls exactly this.

use super::decode::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index and fixed-point weights.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // bilinear support 1.0, stretched when shrinking
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let w: Vec<f64> = (xmin..xmax)
            .map(|x| {
                let t = ((x as f64 - center + 0.5) / filter_scale).abs();
                if t < 1.0 {
                    1.0 - t
                } else {
                    0.0
                }
            })
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

/// Resizes to `width x height`; the same size returns the image unchanged, as PIL.
pub fn resize_bilinear(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    let mut current = img.clone();
    if width != current.width {
        let t = taps(current.width, width);
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
        let t = taps(current.height, height);
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
