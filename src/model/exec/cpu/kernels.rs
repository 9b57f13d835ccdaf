//! Numerical building blocks shared by the forward and backward passes.
//!
//! Everything works on row-major `f32` slices; the GEMM is `gemm`'s (runtime
//! AVX2/AVX-512 dispatch). The transcendental functions are branch-free so the
//! compiler vectorises them; their accuracy (~1e-7) is that of PyTorch's own.

use crate::numeric::exp;
use gemm::Parallelism;

/// Keeps freed activation buffers in the process heap instead of returning them to
/// the kernel: every pass allocates gigabytes of same-sized buffers, and without
/// this glibc maps and zero-faults them afresh each time (measured: 16% of run time).
/// 32 MiB is the largest mmap threshold glibc accepts. The top pad keeps a thread
/// arena's heaps (64 MiB each) when they empty instead of unmapping them: without
/// it, whether they were kept hung on where small long-lived allocations landed
/// (a run driven from a pool thread, as the CLI's, faulted 3-6x the pages, +5-10%
/// CPU time, after an unrelated change to its loop).
pub fn reuse_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes glibc's allocator thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 128 << 20);
    }
}

/// A strided view of a matrix: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows x cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            assert!(
                (rows - 1) * rs + (cols - 1) * cs < data.len(),
                "matrix view out of bounds"
            );
        }
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            data: self.data,
        }
    }
}

/// `dst[m x n] (row stride dst_rs) = a * b`, or `+= a * b` when `accumulate`.
pub fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    a: MatRef,
    b: MatRef,
    accumulate: bool,
    par: Parallelism,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_rs + n <= dst.len(),
        "matmul destination too small"
    );
    crate::model::exec::count_gemm(m, k, n);
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: every view was bounds-checked above and in `MatRef::strided`;
    // `dst` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}

/// Parallelism for one GEMM of `flops` operations: threads only where they pay.
pub fn parallelism(flops: usize) -> Parallelism {
    if flops < 4_000_000 || rayon::current_num_threads() == 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(rayon::current_num_threads())
    }
}

/// Fewest rows for which `gemm` takes its blocked path for an `n`-column product.
///
/// `gemm` picks its algorithm by shape: a horizontal kernel when `m * n <= 256`, a
/// GEMV when `m == 1`, and a smaller depth block when `m, n <= 64`; each sums in
/// another order. The linear layers' rows are images x steps, so a row's result
/// would depend on what else is in the batch. Padding below this count keeps every
/// row on the one blocked path (there the order of a row's sum depends on `k` only),
/// so results are the same bits whatever the batch or resume point.
fn min_rows(n: usize) -> usize {
    if n <= 64 {
        65
    } else {
        4
    }
}

/// Runs `f(x, y, rows)` on copies padded with zero rows to `min_rows`, when fewer.
fn padded(
    x: &[f32],
    y: &mut [f32],
    rows: usize,
    (inp, out): (usize, usize),
    f: impl Fn(&[f32], &mut [f32], usize),
) {
    let min = min_rows(out);
    if rows == 0 || rows >= min {
        return f(x, y, rows);
    }
    let mut xp = vec![0f32; min * inp];
    xp[..rows * inp].copy_from_slice(x);
    let mut yp = vec![0f32; min * out];
    yp[..rows * out].copy_from_slice(y);
    f(&xp, &mut yp, min);
    y.copy_from_slice(&yp[..rows * out]);
}

/// `y[rows x out] = x[rows x in] * w^T + b` for a torch-layout weight `w[out x in]`.
pub fn linear(y: &mut [f32], x: &[f32], rows: usize, w: &[f32], b: &[f32]) {
    let out = b.len();
    let inp = w.len() / out;
    let (y, x) = (&mut y[..rows * out], &x[..rows * inp]);
    for row in y.chunks_exact_mut(out) {
        row.copy_from_slice(b);
    }
    padded(x, y, rows, (inp, out), |x, y, rows| {
        let par = parallelism(2 * rows * inp * out);
        matmul(
            y,
            out,
            MatRef::new(x, rows, inp),
            MatRef::new(w, out, inp).t(),
            true,
            par,
        );
    });
}

/// `dx[rows x in] = dy[rows x out] * w`: the input gradient of [`linear`].
pub fn linear_backward(dx: &mut [f32], dy: &[f32], rows: usize, w: &[f32], out: usize) {
    let inp = w.len() / out;
    let (dx, dy) = (&mut dx[..rows * inp], &dy[..rows * out]);
    padded(dy, dx, rows, (out, inp), |dy, dx, rows| {
        let par = parallelism(2 * rows * inp * out);
        matmul(
            dx,
            inp,
            MatRef::new(dy, rows, out),
            MatRef::new(w, out, inp),
            false,
            par,
        );
    });
}

pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// LayerNorm of each row of `x` into `y`; keeps `xhat` and `1/std` for the backward.
pub struct LayerNormOut<'a> {
    pub y: &'a mut [f32],
    pub xhat: Option<&'a mut [f32]>,
    pub rstd: Option<&'a mut [f32]>,
}

pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: LayerNormOut) {
    let d = gamma.len();
    let LayerNormOut {
        y,
        mut xhat,
        mut rstd,
    } = out;
    for (r, (xr, yr)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        match xhat.as_deref_mut() {
            Some(xh) => {
                for (i, xh) in xh[r * d..(r + 1) * d].iter_mut().enumerate() {
                    *xh = (xr[i] - mean) * inv;
                    yr[i] = *xh * gamma[i] + beta[i];
                }
            }
            None => {
                for i in 0..d {
                    yr[i] = (xr[i] - mean) * inv * gamma[i] + beta[i];
                }
            }
        }
        if let Some(rs) = rstd.as_deref_mut() {
            rs[r] = inv;
        }
    }
}

/// Adds to `dx` the input gradient of a LayerNorm given `dy`, `xhat` and `1/std` per row.
pub fn layer_norm_backward(dx: &mut [f32], dy: &[f32], xhat: &[f32], rstd: &[f32], gamma: &[f32]) {
    let d = gamma.len();
    let mut g = vec![0f32; d];
    for (r, (dxr, dyr)) in dx.chunks_exact_mut(d).zip(dy.chunks_exact(d)).enumerate() {
        let xh = &xhat[r * d..(r + 1) * d];
        let (mut mean_g, mut mean_gx) = (0f32, 0f32);
        for i in 0..d {
            g[i] = dyr[i] * gamma[i];
            mean_g += g[i];
            mean_gx += g[i] * xh[i];
        }
        mean_g /= d as f32;
        mean_gx /= d as f32;
        for i in 0..d {
            dxr[i] += rstd[r] * (g[i] - mean_g - xh[i] * mean_gx);
        }
    }
}

/// erf(x), Abramowitz & Stegun 7.1.26 refined in f32: |error| < 1.5e-7.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_and_gaussian(x).0
}

/// `(erf(x), exp(-x^2))`: the A&S form computes the second on the way, and the
/// GELU derivative needs both.
#[inline(always)]
fn erf_and_gaussian(x: f32) -> (f32, f32) {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let gaussian = exp(-a * a);
    ((1.0 - poly * gaussian).copysign(x), gaussian)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Exact (erf) GELU, as PyTorch's default `gelu`.
pub fn gelu(u: &[f32], g: &mut [f32]) {
    for (g, &u) in g.iter_mut().zip(u) {
        *g = 0.5 * u * (1.0 + erf(u * FRAC_1_SQRT_2));
    }
}

/// Exact GELU of `u` into `g`, and `u` replaced by the derivative
/// GELU'(u) = Phi(u) + u * phi(u): the backward needs only that, and the erf
/// computed here gives it almost for free.
pub fn gelu_keeping_derivative(u: &mut [f32], g: &mut [f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for (g, u) in g.iter_mut().zip(u) {
        // exp(-(u / sqrt 2)^2) = exp(-u^2 / 2): one exp serves Phi and phi.
        let (erf, gaussian) = erf_and_gaussian(*u * FRAC_1_SQRT_2);
        let cdf = 0.5 * (1.0 + erf);
        *g = *u * cdf;
        *u = cdf + *u * INV_SQRT_2PI * gaussian;
    }
}

/// The logistic function.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Quick GELU `u * sigmoid(1.702 u)` (CLIP); with `keep`, `u` is replaced by its
/// derivative `s + 1.702 u s (1 - s)`.
pub fn quick_gelu(u: &mut [f32], g: &mut [f32], keep: bool) {
    for (g, u) in g.iter_mut().zip(u) {
        let s = sigmoid(1.702 * *u);
        *g = *u * s;
        if keep {
            *u = s + 1.702 * *u * s * (1.0 - s);
        }
    }
}

/// The tanh approximation of GELU, `0.5 u (1 + tanh(k (u + 0.044715 u^3)))` with
/// `k = sqrt(2 / pi)` (PyTorch's `gelu(approximate="tanh")`); with `keep`, `u` is
/// replaced by its derivative.
pub fn tanh_gelu(u: &mut [f32], g: &mut [f32], keep: bool) {
    const K: f32 = 0.797_884_6;
    for (g, u) in g.iter_mut().zip(u) {
        let x = *u;
        let z = K * (x + 0.044_715 * x * x * x);
        let th = 1.0 - 2.0 / (exp(2.0 * z) + 1.0);
        *g = 0.5 * x * (1.0 + th);
        if keep {
            *u = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * K * (1.0 + 3.0 * 0.044_715 * x * x);
        }
    }
}

/// SwiGLU on rows `u = [gate (f) | up (f)]`: `g = silu(gate) * up` (`[rows, f]`);
/// with `keep`, each row of `u` becomes `[up * silu'(gate) | silu(gate)]`, the
/// derivatives with respect to the gate and the up projection.
pub fn swiglu(u: &mut [f32], g: &mut [f32], f: usize, keep: bool) {
    for (u, g) in u.chunks_exact_mut(2 * f).zip(g.chunks_exact_mut(f)) {
        let (gate, up) = u.split_at_mut(f);
        for ((g, gate), up) in g.iter_mut().zip(gate).zip(up) {
            let s = sigmoid(*gate);
            let silu = *gate * s;
            *g = silu * *up;
            if keep {
                *gate = *up * s * (1.0 + *gate * (1.0 - s));
                *up = silu;
            }
        }
    }
}

pub fn mul_assign(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d *= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each activation's kept derivative against central differences in f64.
    #[test]
    fn activation_derivatives_match_finite_differences() {
        let xs: Vec<f32> = (-60..=60).map(|i| i as f32 * 0.1).collect();
        let num = |f: &dyn Fn(f64) -> f64, x: f32| {
            let (x, h) = (x as f64, 1e-5);
            (f(x + h) - f(x - h)) / (2.0 * h)
        };
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let quick = |x: f64| x * sig(1.702 * x);
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let tanh_gelu_f = |x: f64| 0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh());
        let silu = |x: f64| x * sig(x);
        for (name, kernel, exact) in [
            (
                "quick",
                quick_gelu as fn(&mut [f32], &mut [f32], bool),
                &quick as &dyn Fn(f64) -> f64,
            ),
            ("tanh", tanh_gelu, &tanh_gelu_f),
        ] {
            let mut u = xs.clone();
            let mut g = vec![0f32; xs.len()];
            kernel(&mut u, &mut g, true);
            for ((&x, &g), &d) in xs.iter().zip(&g).zip(&u) {
                assert!(
                    (g as f64 - exact(x as f64)).abs() < 1e-5,
                    "{name}({x}) = {g}"
                );
                assert!(
                    (d as f64 - num(exact, x)).abs() < 1e-4,
                    "{name}'({x}) = {d}"
                );
            }
        }
        // SwiGLU: gate = x, up = 0.7 - x.
        let f = xs.len();
        let mut u: Vec<f32> = xs
            .iter()
            .copied()
            .chain(xs.iter().map(|x| 0.7 - x))
            .collect();
        let mut g = vec![0f32; f];
        swiglu(&mut u, &mut g, f, true);
        for (i, &x) in xs.iter().enumerate() {
            let up = 0.7 - x as f64;
            assert!((g[i] as f64 - silu(x as f64) * up).abs() < 1e-5);
            assert!(
                (u[i] as f64 - up * num(&silu, x)).abs() < 1e-4,
                "d gate at {x}"
            );
            assert!(
                (u[f + i] as f64 - silu(x as f64)).abs() < 1e-5,
                "d up at {x}"
            );
        }
    }

    #[test]
    fn exp_and_erf_match_libm_closely() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in -4000..4000 {
            let x = i as f32 * 0.005;
            let e = (x as f64).exp();
            worst_exp = worst_exp.max(((exp(x) as f64) - e).abs() / e);
            worst_erf = worst_erf.max((erf(x) as f64 - erf_reference(x as f64)).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
        // A&S 7.1.26 is within 1.5e-7; evaluating 1 - poly * exp(-x^2) in f32 adds up to ~2 ulp of 1.
        assert!(worst_erf < 4e-7, "erf absolute error {worst_erf}");
    }

    /// erf by its Maclaurin series / continued fraction in f64: independent of the A&S form.
    fn erf_reference(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc continued fraction (Lentz), accurate for |x| >= 3.
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn gelu_and_its_derivative_match_their_closed_forms() {
        let u: Vec<f32> = (-3000..3000).map(|i| i as f32 * 0.003).collect();
        let mut du = u.clone();
        let mut g = vec![0f32; u.len()];
        gelu_keeping_derivative(&mut du, &mut g);
        let mut plain = vec![0f32; u.len()];
        gelu(&u, &mut plain);
        for ((&u, &du), (&g, &plain)) in u.iter().zip(&du).zip(g.iter().zip(&plain)) {
            let x = u as f64;
            let cdf = 0.5 * (1.0 + erf_reference(x / 2f64.sqrt()));
            let want = cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!(
                (du as f64 - want).abs() < 1e-6,
                "gelu'({u}) = {du}, want {want}"
            );
            assert!((g as f64 - x * cdf).abs() < 1e-6, "gelu({u}) = {g}");
            assert_eq!(g, plain, "the same GELU as without the derivative");
        }
    }

    #[test]
    fn matmul_matches_naive_with_transposes() {
        let a: Vec<f32> = (0..12).map(|v| v as f32 * 0.5 - 2.0).collect(); // 3x4
        let b: Vec<f32> = (0..8).map(|v| (v as f32).sin()).collect(); // 2x4, used transposed
        let mut c = vec![0f32; 6];
        matmul(
            &mut c,
            2,
            MatRef::new(&a, 3, 4),
            MatRef::new(&b, 2, 4).t(),
            false,
            Parallelism::None,
        );
        for i in 0..3 {
            for j in 0..2 {
                let want: f32 = (0..4).map(|k| a[i * 4 + k] * b[j * 4 + k]).sum();
                assert!((c[i * 2 + j] - want).abs() < 1e-5);
            }
        }
    }

    /// A row of a linear layer (and of its backward) is the same bits whatever the
    /// other rows, for the shapes where `gemm` would switch algorithm by row count.
    #[test]
    fn linear_rows_do_not_depend_on_the_batch() {
        let mut rng = crate::numeric::SplitMix64::new(7);
        let mut random = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| rng.below(1000) as f32 / 1000.0 - 0.5)
                .collect()
        };
        for (inp, out) in [(600, 10), (192, 768), (768, 192), (64, 10), (3, 40)] {
            let (w, b, x) = (random(out * inp), random(out), random(130 * inp));
            let dy = random(130 * out);
            let first = |rows: usize| {
                let mut y = vec![0f32; rows * out];
                linear(&mut y, &x, rows, &w, &b);
                let mut dx = vec![0f32; rows * inp];
                linear_backward(&mut dx, &dy, rows, &w, out);
                (y[..out].to_vec(), dx[..inp].to_vec())
            };
            let want = first(1);
            for rows in 2..=130 {
                assert!(
                    first(rows) == want,
                    "{inp}x{out}: row 0 changed with {rows} rows"
                );
            }
        }
    }
}
