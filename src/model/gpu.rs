//! Optional CUDA offload of the linear layers (`--features cuda`, `--device cuda`).
//!
//! The linear layers are 80–95% of the FLOPs of path finding on ViT-B/16 (see
//! `neuronpath bench`). With a GPU, their GEMMs go to cuBLAS: each weight is copied
//! to the device once, each activation goes there and back per call. Everything
//! else (attention per sequence, LayerNorm, GELU, softmax) stays on the CPU, so the
//! numerics are those of the CPU path up to GEMM summation order. Without
//! `--device cuda`, or built without the feature, nothing here runs.
//!
//! Not yet measured on a GPU: `tests/gpu.rs` checks the GEMMs against the CPU and
//! the reference paths on a device, and skips where there is none.

use anyhow::{bail, Context, Result};
use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Linear layers smaller than this (multiply-adds) stay on the CPU: copying costs more.
const MIN_MACS: usize = 1 << 22;

struct Gpu {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    /// Device copies of weights, by host address and length. Weights live as long as
    /// their model; [`forget_weights`] drops the copies when a model is loaded.
    weights: HashMap<(usize, usize), CudaSlice<f32>>,
}

fn device() -> &'static Mutex<Option<Gpu>> {
    static DEVICE: OnceLock<Mutex<Option<Gpu>>> = OnceLock::new();
    DEVICE.get_or_init(|| Mutex::new(None))
}

/// Sends the linear layers of every later pass to CUDA device `ordinal`.
pub fn enable(ordinal: usize) -> Result<()> {
    // cudarc panics on a missing library: look first, and say what is missing.
    // SAFETY: these only try to open the shared libraries.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        bail!("--gpu {ordinal}: no CUDA driver library (libcuda) on this machine");
    }
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        bail!("--gpu {ordinal}: no cuBLAS library (libcublas) on this machine");
    }
    let context = CudaContext::new(ordinal)
        .with_context(|| format!("cannot open CUDA device {ordinal} (is the driver installed?)"))?;
    let stream = context.default_stream();
    let blas = CudaBlas::new(stream.clone()).context("cannot start cuBLAS")?;
    *device().lock().expect("GPU lock") = Some(Gpu {
        stream,
        blas,
        weights: HashMap::new(),
    });
    Ok(())
}

/// Drops the device copies of weights (their host buffers may be reused).
pub fn forget_weights() {
    if let Some(gpu) = device().lock().expect("GPU lock").as_mut() {
        gpu.weights.clear();
    }
}

/// `x[rows x in] * w^T` (torch-layout `w[out x in]`), `[rows x out]`, on the GPU;
/// `None` when no device is enabled or the layer is too small to be worth it.
pub fn linear(x: &[f32], rows: usize, w: &[f32], out: usize) -> Option<Vec<f32>> {
    let inp = w.len() / out;
    // Column-major, product^T[out x rows] = w[out x in] (stored as w^T, ld in) * x^T[in x rows].
    gemm(
        x,
        w,
        Shape {
            m: out,
            n: rows,
            k: inp,
            weight_op: Op::Transposed,
            lda: inp,
            ldb: inp,
            ldc: out,
        },
    )
}

/// `dy[rows x out] * w`, `[rows x in]`, on the GPU; `None` as for [`linear`].
pub fn linear_backward(dy: &[f32], rows: usize, w: &[f32], out: usize) -> Option<Vec<f32>> {
    let inp = w.len() / out;
    // Column-major, dx^T[in x rows] = w^T[in x out] (as stored, ld in) * dy^T[out x rows].
    gemm(
        dy,
        w,
        Shape {
            m: inp,
            n: rows,
            k: out,
            weight_op: Op::AsStored,
            lda: inp,
            ldb: out,
            ldc: inp,
        },
    )
}

enum Op {
    AsStored,
    Transposed,
}

/// A column-major `c[m x n] = op(weight)[m x k] * activation[k x n]`.
struct Shape {
    m: usize,
    n: usize,
    k: usize,
    weight_op: Op,
    lda: usize,
    ldb: usize,
    ldc: usize,
}

fn gemm(activation: &[f32], weight: &[f32], shape: Shape) -> Option<Vec<f32>> {
    if shape.m * shape.n * shape.k < MIN_MACS {
        return None;
    }
    let mut guard = device().lock().expect("GPU lock");
    let gpu = guard.as_mut()?;
    let mut c = vec![0f32; shape.m * shape.n];
    // A device error mid-run cannot be recovered from consistently: stop loudly.
    gpu.gemm(&mut c, activation, weight, &shape)
        .expect("CUDA GEMM failed");
    Some(c)
}

impl Gpu {
    fn gemm(&mut self, c: &mut [f32], activation: &[f32], weight: &[f32], s: &Shape) -> Result<()> {
        let key = (weight.as_ptr() as usize, weight.len());
        if !self.weights.contains_key(&key) {
            let copy = self.stream.clone_htod(weight)?;
            self.weights.insert(key, copy);
        }
        let a = &self.weights[&key];
        let b = self.stream.clone_htod(&activation[..s.k * s.n])?;
        let mut out = self.stream.alloc_zeros::<f32>(s.m * s.n)?;
        let config = GemmConfig {
            transa: match s.weight_op {
                Op::AsStored => CUBLAS_OP_N,
                Op::Transposed => CUBLAS_OP_T,
            },
            transb: CUBLAS_OP_N,
            m: s.m as i32,
            n: s.n as i32,
            k: s.k as i32,
            alpha: 1.0f32,
            lda: s.lda as i32,
            ldb: s.ldb as i32,
            beta: 0.0f32,
            ldc: s.ldc as i32,
        };
        // SAFETY: the device buffers hold exactly the m x k, k x n and m x n matrices
        // that the leading dimensions above describe.
        unsafe { self.blas.gemm(config, a, &b, &mut out)? };
        self.stream.memcpy_dtoh(&out, &mut c[..s.m * s.n])?;
        Ok(())
    }
}
