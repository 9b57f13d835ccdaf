//! Class profiles summed exactly: each activation is rounded down to a multiple
//! of 2^-24 once and summed as an integer, so a sum does not depend on the order
//! of the images, and sums of shards add up to the single run's bit for bit.

/// The sum's unit: 2^-24 (6e-8, below an f32's rounding at 1).
const UNIT: f64 = (1u64 << 24) as f64;

/// `v` in units of 2^-24, rounded towards zero; saturating beyond 2^39.
pub fn fixed(v: f32) -> i64 {
    (v as f64 * UNIT) as i64
}

/// The mean of `count` values whose fixed-point sum is `sum`.
pub fn mean(sum: i64, count: u64) -> Option<f32> {
    (count > 0).then(|| (sum as f64 / UNIT / count as f64) as f32)
}
