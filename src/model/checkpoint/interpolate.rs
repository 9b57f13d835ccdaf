//! Position embeddings resampled to another patch grid, as Hugging Face's DINOv2
//! does at every forward where the grid differs from the trained one
//! (`interpolate_pos_encoding`, transformers 5): PyTorch's bicubic
//! `F.interpolate(size=..., align_corners=False)` on the `[d, grid, grid]` image,
//! without antialiasing (`Dinov2`) or with it (`Dinov2WithRegisters`). Both are
//! separable: the rows are resampled, then the columns, in f32 as PyTorch does.

/// Which of PyTorch's two bicubic filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bicubic {
    /// `upsample_bicubic2d`: Keys' cubic with a = -0.75 on the four nearest
    /// samples, edges replicated.
    Plain,
    /// `_upsample_bicubic2d_aa`: PIL's filter (a = -0.5) stretched by the
    /// downscaling factor, weights normalised, no samples beyond the edges.
    Antialiased,
}

/// Per output sample, the input indices and their weights.
type Taps = Vec<Vec<(usize, f32)>>;

/// `[from * from, d]` rows of a square grid (row-major) resampled to `[to * to, d]`.
pub(crate) fn resample(
    grid: &[f32],
    d: usize,
    from: usize,
    to: usize,
    filter: Bicubic,
) -> Vec<f32> {
    let taps = match filter {
        Bicubic::Plain => plain(from, to),
        Bicubic::Antialiased => antialiased(from, to),
    };
    let mut rows = vec![0f32; from * to * d];
    for y in 0..from {
        for (x, taps) in taps.iter().enumerate() {
            let out = &mut rows[(y * to + x) * d..][..d];
            for &(i, w) in taps {
                let src = &grid[(y * from + i) * d..][..d];
                out.iter_mut().zip(src).for_each(|(o, s)| *o += w * s);
            }
        }
    }
    let mut out = vec![0f32; to * to * d];
    for (y, taps) in taps.iter().enumerate() {
        for x in 0..to {
            let dst = &mut out[(y * to + x) * d..][..d];
            for &(i, w) in taps {
                let src = &rows[(i * to + x) * d..][..d];
                dst.iter_mut().zip(src).for_each(|(o, s)| *o += w * s);
            }
        }
    }
    out
}

/// Keys' cubic convolution kernel with parameter `a`, at distance `x >= 0`.
fn cubic(x: f32, a: f32) -> f32 {
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// `upsample_bicubic2d`'s taps: source `scale (i + 0.5) - 0.5`, its floor and the
/// three around it, clamped to the edges.
fn plain(input: usize, output: usize) -> Taps {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let real = scale * (i as f32 + 0.5) - 0.5;
            let floor = real.floor();
            let t = real - floor;
            let weights = [
                cubic(t + 1.0, -0.75),
                cubic(t, -0.75),
                cubic(1.0 - t, -0.75),
                cubic(2.0 - t, -0.75),
            ];
            (0..4)
                .map(|j| {
                    let index = (floor as i64 + j as i64 - 1).clamp(0, input as i64 - 1);
                    (index as usize, weights[j])
                })
                .collect()
        })
        .collect()
}

/// `_upsample_bicubic2d_aa`'s taps (PIL's): centre `scale (i + 0.5)`, support 2
/// stretched by the scale when shrinking, weights normalised to sum 1.
fn antialiased(input: usize, output: usize) -> Taps {
    let scale = input as f32 / output as f32;
    let (support, inverse) = if scale >= 1.0 {
        (2.0 * scale, 1.0 / scale)
    } else {
        (2.0, 1.0)
    };
    (0..output)
        .map(|i| {
            let center = scale * (i as f32 + 0.5);
            let lo = ((center - support + 0.5) as i64).max(0);
            let hi = ((center + support + 0.5) as i64).min(input as i64);
            let taps: Vec<(usize, f32)> = (lo..hi.max(lo))
                .map(|j| {
                    let x = (j as f32 - center + 0.5) * inverse;
                    (j as usize, cubic(x.abs(), -0.5))
                })
                .collect();
            let total: f32 = taps.iter().map(|t| t.1).sum();
            if total == 0.0 {
                return taps;
            }
            taps.into_iter().map(|(j, w)| (j, w / total)).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both filters reproduce a constant and keep a grid of the same size.
    #[test]
    fn constant_stays_constant() {
        for filter in [Bicubic::Plain, Bicubic::Antialiased] {
            for (from, to) in [(7, 4), (4, 9), (5, 5)] {
                let out = resample(&vec![2.5; from * from * 3], 3, from, to, filter);
                assert!(
                    out.iter().all(|v| (v - 2.5).abs() < 1e-5),
                    "{filter:?} {from}->{to}"
                );
            }
        }
        let grid: Vec<f32> = (0..25).map(|v| v as f32).collect();
        assert_eq!(resample(&grid, 1, 5, 5, Bicubic::Plain), grid);
    }
}
