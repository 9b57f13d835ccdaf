//! Integration rules for the path integral of gradients from alpha = 0 to 1.

use crate::names::Named;
use std::fmt;

/// A quadrature rule on [0, 1]: evaluate at `alphas`, average with `weights` (summing to 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "rule", content = "steps", rename_all = "kebab-case")]
pub enum Integration {
    /// Left Riemann sum, alpha = k/m for k = 0..m-1 (alpha = 1 is never evaluated):
    /// the reference code's rule.
    LeftRiemann(usize),
    /// n-point Gauss-Legendre: exact for polynomials of degree 2n - 1.
    GaussLegendre(usize),
}

/// An integration rule, as records and the command line name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    LeftRiemann,
    GaussLegendre,
}

impl Rule {
    /// The rule with `steps` points.
    pub fn with(self, steps: usize) -> Integration {
        match self {
            Rule::LeftRiemann => Integration::LeftRiemann(steps),
            Rule::GaussLegendre => Integration::GaussLegendre(steps),
        }
    }
}

crate::names::display_by_name!(Rule);

impl Named for Rule {
    const ALL: &'static [Rule] = &[Rule::LeftRiemann, Rule::GaussLegendre];

    fn name(self) -> &'static str {
        match self {
            Rule::LeftRiemann => "left-riemann",
            Rule::GaussLegendre => "gauss-legendre",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Rule::LeftRiemann => {
                "left Riemann sum, alpha = k/m, k = 0..m-1: identical to the reference code"
            }
            Rule::GaussLegendre => {
                "Gauss-Legendre quadrature: the same integral with far fewer steps (fast mode)"
            }
        }
    }
}

impl fmt::Display for Integration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Integration::LeftRiemann(m) => write!(f, "left-riemann({m})"),
            Integration::GaussLegendre(n) => write!(f, "gauss-legendre({n})"),
        }
    }
}

impl Integration {
    /// The rule's name, as `--integration` spells it.
    /// The rule, without its number of steps.
    pub fn rule(&self) -> Rule {
        match self {
            Integration::LeftRiemann(_) => Rule::LeftRiemann,
            Integration::GaussLegendre(_) => Rule::GaussLegendre,
        }
    }

    pub fn name(&self) -> &'static str {
        self.rule().name()
    }

    pub fn steps(&self) -> usize {
        match *self {
            Integration::LeftRiemann(m) | Integration::GaussLegendre(m) => m,
        }
    }

    /// `value` scaled to step `k`: for the Riemann rule computed as the reference does,
    /// `(value / m) * k`, so that the scaled activations are bit-identical to its own.
    pub fn scale(&self, value: f32, k: usize, alphas: &[f32]) -> f32 {
        match *self {
            Integration::LeftRiemann(m) => value / m as f32 * k as f32,
            Integration::GaussLegendre(_) => value * alphas[k],
        }
    }

    /// `(alphas, weights)`.
    pub fn nodes(&self) -> (Vec<f32>, Vec<f64>) {
        match *self {
            Integration::LeftRiemann(m) => (
                (0..m).map(|k| k as f32 / m as f32).collect(),
                vec![1.0 / m as f64; m],
            ),
            Integration::GaussLegendre(n) => {
                let (x, w) = gauss_legendre(n);
                // [-1, 1] -> [0, 1]
                (
                    x.iter().map(|&x| ((x + 1.0) / 2.0) as f32).collect(),
                    w.iter().map(|w| w / 2.0).collect(),
                )
            }
        }
    }
}

/// Nodes and weights on [-1, 1] by Newton's method on the Legendre polynomial P_n.
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut xs = Vec::with_capacity(n);
    let mut ws = Vec::with_capacity(n);
    for i in 0..n {
        // Tricomi's initial guess for the i-th root.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            let p = if n == 0 { 1.0 } else { p1 };
            let pm1 = if n == 1 { 1.0 } else { p0 };
            dp = n as f64 * (x * p - pm1) / (x * x - 1.0);
            let step = p / dp;
            x -= step;
            if step.abs() < 1e-15 {
                break;
            }
        }
        xs.push(x);
        ws.push(2.0 / ((1.0 - x * x) * dp * dp));
    }
    (xs, ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for n in 1..12 {
            let (a, w) = Integration::GaussLegendre(n).nodes();
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            for deg in 0..2 * n {
                let got: f64 = a
                    .iter()
                    .zip(&w)
                    .map(|(&x, w)| w * (x as f64).powi(deg as i32))
                    .sum();
                assert!(
                    (got - 1.0 / (deg as f64 + 1.0)).abs() < 1e-6,
                    "n={n} deg={deg}: {got}"
                );
            }
        }
    }

    #[test]
    fn left_riemann_is_the_reference_grid() {
        let (a, w) = Integration::LeftRiemann(20).nodes();
        assert_eq!(a.len(), 20);
        assert_eq!(a[0], 0.0);
        assert_eq!(a[19], 0.95);
        assert!(w.iter().all(|&w| w == 0.05));
    }
}
