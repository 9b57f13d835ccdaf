//! The steps of a pass as kernel dispatches: [`Executor`] for [`Gpu`].

use super::context::{Context, GpuTensor, MAX_GROUPS};
use super::kernels::{copy_mode, CopyParams, CosineParams, GemmParams, Kernel, RowParams};
use super::Gpu;
use crate::model::exec::{count_gemm, AttentionShape, Batch, Executor, NormStats, Write};
use crate::model::family::FfnActivation;
use crate::model::vit::{LayerNorm, Linear, Vit, Weights, ZeroShot};
use bytemuck::bytes_of;
use std::ops::Range;

/// Values per workgroup of the element-wise kernels.
const WG: usize = 256;

/// One operand of a product: element (i, k) of A at `off + i * rs + k * cs` (B:
/// (k, j)), moved by `outer` and `inner` per batch index.
#[derive(Clone, Copy, Default)]
struct Operand {
    off: usize,
    rs: usize,
    cs: usize,
    outer: usize,
    inner: usize,
}

/// `C[m, n] (+)= A[m, k] B[k, n]` over a batch of `outer x inner` products.
#[derive(Clone, Copy, Default)]
struct Product {
    m: usize,
    n: usize,
    k: usize,
    a: Operand,
    b: Operand,
    /// C's `cs` is 1.
    c: Operand,
    outer: usize,
    inner: usize,
}

/// A row-major `[rows, cols]` matrix as an operand.
fn dense(cols: usize) -> Operand {
    Operand {
        rs: cols,
        cs: 1,
        ..Operand::default()
    }
}

/// Its transpose (stored `[cols, rows]`).
fn transposed(rows: usize) -> Operand {
    Operand {
        rs: 1,
        cs: rows,
        ..Operand::default()
    }
}

fn u(v: usize) -> u32 {
    u32::try_from(v).expect("tensor index within u32 (tensors are bound below 4 GiB)")
}

impl Gpu {
    fn ctx(&self) -> &Context {
        &self.device.0
    }

    /// Records `c = a b (+ bias)` for `p`.
    fn gemm(
        &self,
        (a, b, c): (&GpuTensor, &GpuTensor, &GpuTensor),
        p: Product,
        bias: Option<&GpuTensor>,
    ) {
        let ctx = self.ctx();
        count_gemm(p.m * p.outer * p.inner, p.k, p.n);
        let large = p.m >= 128 && p.n >= 128;
        let (kernel, tile) = match large {
            true => (&ctx.kernels.gemm_large, 128),
            false => (&ctx.kernels.gemm_small, 64),
        };
        let bias_buffer = bias.map_or(ctx.unused(0), |b| b.buffer());
        let buffers = [a.buffer(), b.buffer(), bias_buffer, c.buffer()];
        let groups_x = u(p.n.div_ceil(tile));
        let groups_y = u(p.m.div_ceil(tile));
        // Whole outer batches per dispatch, within the limit on z.
        let outers_per = (MAX_GROUPS as usize / p.inner.max(1)).max(1);
        for first in (0..p.outer).step_by(outers_per) {
            let outers = outers_per.min(p.outer - first);
            let params = GemmParams {
                m: u(p.m),
                n: u(p.n),
                k: u(p.k),
                a_rs: u(p.a.rs),
                a_cs: u(p.a.cs),
                b_rs: u(p.b.rs),
                b_cs: u(p.b.cs),
                c_rs: u(p.c.rs),
                inner_count: u(p.inner),
                a_outer: u(p.a.outer),
                a_inner: u(p.a.inner),
                b_outer: u(p.b.outer),
                b_inner: u(p.b.inner),
                c_outer: u(p.c.outer),
                c_inner: u(p.c.inner),
                a_off: u(p.a.off + first * p.a.outer),
                b_off: u(p.b.off + first * p.b.outer),
                c_off: u(p.c.off + first * p.c.outer),
                flags: u32::from(bias.is_some()),
            };
            let groups = [groups_x, groups_y, u(outers * p.inner)];
            ctx.dispatch(kernel, &buffers, bytes_of(&params), groups);
        }
    }

    /// One workgroup per row of `kernel` (`rows.wgsl`).
    fn rows_kernel(&self, kernel: &Kernel, buffers: [&wgpu::Buffer; 6], params: RowParams) {
        let groups = Context::spread(params.count as usize);
        self.ctx()
            .dispatch(kernel, &buffers, bytes_of(&params), groups);
    }

    /// One thread per value of `kernel` (`elementwise.wgsl`).
    fn elementwise(&self, kernel: &Kernel, buffers: [&wgpu::Buffer; 4], params: CopyParams) {
        if params.count == 0 {
            return;
        }
        let groups = Context::spread((params.count as usize).div_ceil(WG));
        self.ctx()
            .dispatch(kernel, &buffers, bytes_of(&params), groups);
    }

    /// The `copy` kernel from `src` into `dst`.
    fn copy(
        &self,
        dst: &GpuTensor,
        src: Option<&GpuTensor>,
        index: Option<&GpuTensor>,
        p: CopyParams,
    ) {
        let ctx = self.ctx();
        let src = src.map_or(ctx.unused(0), |s| s.buffer());
        let index = index.map_or(ctx.unused(0), |i| i.buffer());
        let buffers = [src, index, dst.buffer(), ctx.unused(1)];
        self.elementwise(&ctx.kernels.copy, buffers, p);
    }

    /// Copy parameters moving rows `rows` of every sequence laid out as `b`.
    fn row_copy(b: Batch, rows: &Range<usize>) -> CopyParams {
        CopyParams {
            count: u(b.seqs * rows.len() * b.width),
            rows: u(rows.len()),
            width: u(b.width),
            s_row_step: 1,
            divisor: 1.0,
            ..CopyParams::default()
        }
    }

    fn upload_indices(&self, order: &[usize]) -> GpuTensor {
        let indices: Vec<u32> = order.iter().map(|&i| u(i)).collect();
        self.ctx().upload_bytes(bytemuck::cast_slice(&indices))
    }
}

impl Executor for Gpu {
    type Tensor = GpuTensor;

    fn weights<'a>(&'a self, _: &'a Vit) -> &'a Weights<GpuTensor> {
        &self.weights
    }

    fn upload(&self, values: Vec<f32>) -> GpuTensor {
        self.ctx().upload_bytes(bytemuck::cast_slice(&values))
    }

    fn download(&self, t: &GpuTensor) -> Vec<f32> {
        self.ctx().download(t)
    }

    fn take_host(&self, t: GpuTensor) -> Vec<f32> {
        self.ctx().download(&t)
    }

    fn zeros(&self, len: usize) -> GpuTensor {
        self.ctx().zeros(len)
    }

    fn duplicate(&self, t: &GpuTensor) -> GpuTensor {
        self.ctx().duplicate(t)
    }

    fn rows(&self, x: &GpuTensor, b: Batch, rows: Range<usize>) -> GpuTensor {
        let out = self.ctx().tensor(b.seqs * rows.len() * b.width);
        let params = CopyParams {
            s_stride: u(b.rows * b.width),
            s_row0: u(rows.start),
            d_stride: u(rows.len() * b.width),
            mode: copy_mode::SET,
            ..Self::row_copy(b, &rows)
        };
        self.copy(&out, Some(x), None, params);
        out
    }

    fn write_rows(
        &self,
        dst: &mut GpuTensor,
        b: Batch,
        rows: Range<usize>,
        src: &GpuTensor,
        how: Write,
    ) {
        let part = rows.len() * b.width;
        let shared = src.len() == part && b.seqs > 1;
        let mode = match how {
            Write::Set => copy_mode::SET,
            Write::Add => copy_mode::ADD,
        } | if shared { copy_mode::SHARED } else { 0 };
        let params = CopyParams {
            s_stride: u(part),
            d_stride: u(b.rows * b.width),
            d_row0: u(rows.start),
            mode,
            ..Self::row_copy(b, &rows)
        };
        self.copy(dst, Some(src), None, params);
    }

    fn zero_rows(&self, x: &mut GpuTensor, b: Batch, rows: Range<usize>) {
        let params = CopyParams {
            d_stride: u(b.rows * b.width),
            d_row0: u(rows.start),
            mode: copy_mode::ZERO,
            ..Self::row_copy(b, &rows)
        };
        self.copy(x, None, None, params);
    }

    fn gather(&self, x: &GpuTensor, seqs: usize, order: &[usize]) -> GpuTensor {
        let size = x.len() / seqs.max(1);
        let out = self.ctx().tensor(order.len() * size);
        let index = self.upload_indices(order);
        let b = Batch::new(order.len(), 1, size);
        let params = CopyParams {
            s_stride: u(size),
            d_stride: u(size),
            mode: copy_mode::SET | copy_mode::INDEXED,
            ..Self::row_copy(b, &(0..1))
        };
        self.copy(&out, Some(x), Some(&index), params);
        out
    }

    fn linear(&self, x: &GpuTensor, rows: usize, layer: &Linear<GpuTensor>) -> GpuTensor {
        let out = layer.b.len();
        let inp = layer.w.len() / out;
        let y = self.ctx().tensor(rows * out);
        let p = Product {
            m: rows,
            n: out,
            k: inp,
            a: dense(inp),
            b: transposed(inp),
            c: dense(out),
            outer: 1,
            inner: 1,
        };
        self.gemm((x, &layer.w, &y), p, Some(&layer.b));
        y
    }

    fn linear_backward(&self, dy: &GpuTensor, rows: usize, w: &GpuTensor, out: usize) -> GpuTensor {
        let inp = w.len() / out;
        let dx = self.ctx().tensor(rows * inp);
        let p = Product {
            m: rows,
            n: inp,
            k: out,
            a: dense(out),
            b: dense(inp),
            c: dense(inp),
            outer: 1,
            inner: 1,
        };
        self.gemm((dy, w, &dx), p, None);
        dx
    }

    fn layer_norm(
        &self,
        x: &GpuTensor,
        norm: &LayerNorm<GpuTensor>,
        stats: bool,
    ) -> (GpuTensor, Option<NormStats<GpuTensor>>) {
        let ctx = self.ctx();
        let d = norm.gamma.len();
        let rows = x.len() / d;
        let y = ctx.tensor(x.len());
        let kept = stats.then(|| NormStats {
            xhat: ctx.tensor(x.len()),
            rstd: ctx.tensor(rows),
        });
        let (xhat, rstd) = match &kept {
            Some(k) => (k.xhat.buffer(), k.rstd.buffer()),
            None => (ctx.unused(1), ctx.unused(2)),
        };
        let buffers = [
            x.buffer(),
            norm.gamma.buffer(),
            norm.beta.buffer(),
            y.buffer(),
            xhat,
            rstd,
        ];
        let params = RowParams {
            count: u(rows),
            width: u(d),
            eps: norm.eps,
            flags: u32::from(stats),
            ..RowParams::default()
        };
        self.rows_kernel(&ctx.kernels.layer_norm, buffers, params);
        (y, kept)
    }

    fn layer_norm_backward(
        &self,
        dx: &mut GpuTensor,
        b: Batch,
        rows: Range<usize>,
        dy: &GpuTensor,
        stats: &NormStats<GpuTensor>,
        gamma: &GpuTensor,
    ) {
        let ctx = self.ctx();
        let buffers = [
            dy.buffer(),
            gamma.buffer(),
            ctx.unused(0),
            dx.buffer(),
            stats.xhat.buffer(),
            stats.rstd.buffer(),
        ];
        let params = RowParams {
            count: u(b.seqs * rows.len()),
            width: u(b.width),
            rows: u(rows.len()),
            full_rows: u(b.rows),
            row0: u(rows.start),
            ..RowParams::default()
        };
        self.rows_kernel(&ctx.kernels.layer_norm_backward, buffers, params);
    }

    fn attention(&self, qkv: &GpuTensor, a: AttentionShape) -> (GpuTensor, GpuTensor) {
        let ctx = self.ctx();
        let (s, t, q, h, dh) = (a.seqs, a.tokens, a.queries, a.heads, a.head_dim);
        let d = h * dh;
        let probs = ctx.tensor(s * h * q * t);
        let out = ctx.tensor(s * q * d);
        let row = 3 * d;
        // Per (sequence, head): Q rows, K and V rows of the fused qkv.
        let head = |off: usize, rs: usize, cs: usize| Operand {
            off,
            rs,
            cs,
            outer: t * row,
            inner: dh,
        };
        let weights = |rs: usize, cs: usize| Operand {
            off: 0,
            rs,
            cs,
            outer: h * q * t,
            inner: q * t,
        };
        let scores = Product {
            m: q,
            n: t,
            k: dh,
            a: head(0, row, 1),
            b: head(d, 1, row),
            c: weights(t, 1),
            outer: s,
            inner: h,
        };
        self.gemm((qkv, qkv, &probs), scores, None);
        let params = RowParams {
            count: u(s * h * q),
            width: u(t),
            scale: 1.0 / (dh as f32).sqrt(),
            ..RowParams::default()
        };
        let buffers = [
            ctx.unused(0),
            ctx.unused(0),
            ctx.unused(0),
            probs.buffer(),
            ctx.unused(1),
            ctx.unused(2),
        ];
        self.rows_kernel(&ctx.kernels.softmax, buffers, params);
        let mixed = Product {
            m: q,
            n: dh,
            k: t,
            a: weights(t, 1),
            b: head(2 * d, row, 1),
            c: Operand {
                off: 0,
                rs: d,
                cs: 1,
                outer: q * d,
                inner: dh,
            },
            outer: s,
            inner: h,
        };
        self.gemm((&probs, qkv, &out), mixed, None);
        (probs, out)
    }

    fn attention_backward(
        &self,
        qkv: &GpuTensor,
        probs: &GpuTensor,
        dout: &GpuTensor,
        a: AttentionShape,
    ) -> GpuTensor {
        let ctx = self.ctx();
        let (s, t, q, h, dh) = (a.seqs, a.tokens, a.queries, a.heads, a.head_dim);
        let d = h * dh;
        let row = 3 * d;
        let dqkv = ctx.zeros(s * t * row);
        let ds = ctx.tensor(s * h * q * t);
        let head = |off: usize, rs: usize, cs: usize| Operand {
            off,
            rs,
            cs,
            outer: t * row,
            inner: dh,
        };
        let weights = |rs: usize, cs: usize| Operand {
            off: 0,
            rs,
            cs,
            outer: h * q * t,
            inner: q * t,
        };
        let upstream = Operand {
            off: 0,
            rs: d,
            cs: 1,
            outer: q * d,
            inner: dh,
        };
        let batch = |m, n, k, a, b, c| Product {
            m,
            n,
            k,
            a,
            b,
            c,
            outer: s,
            inner: h,
        };
        // dV = P^T dO
        let dv = batch(t, dh, q, weights(1, t), upstream, head(2 * d, row, 1));
        self.gemm((probs, dout, &dqkv), dv, None);
        // dP = dO V^T, then dS = P * (dP - rowsum(dP * P)) * scale
        let dp = batch(q, t, dh, upstream, head(2 * d, 1, row), weights(t, 1));
        self.gemm((dout, qkv, &ds), dp, None);
        let params = RowParams {
            count: u(s * h * q),
            width: u(t),
            scale: 1.0 / (dh as f32).sqrt(),
            ..RowParams::default()
        };
        let buffers = [
            probs.buffer(),
            ctx.unused(0),
            ctx.unused(0),
            ds.buffer(),
            ctx.unused(1),
            ctx.unused(2),
        ];
        self.rows_kernel(&ctx.kernels.softmax_backward, buffers, params);
        // dQ = dS K, dK = dS^T Q
        let dq = batch(q, dh, t, weights(t, 1), head(d, row, 1), head(0, row, 1));
        self.gemm((&ds, qkv, &dqkv), dq, None);
        let dk = batch(t, dh, q, weights(1, t), head(0, row, 1), head(d, row, 1));
        self.gemm((&ds, qkv, &dqkv), dk, None);
        dqkv
    }

    fn activation(
        &self,
        fc1_out: &mut GpuTensor,
        act: FfnActivation,
        f: usize,
        keep: bool,
    ) -> GpuTensor {
        let ctx = self.ctx();
        let rows = fc1_out.len() / act.fc1_width(f);
        let g = ctx.tensor(rows * f);
        let params = CopyParams {
            count: u(rows * f),
            neurons: u(f),
            mode: activation_code(act) | if keep { 16 } else { 0 },
            ..CopyParams::default()
        };
        let buffers = [ctx.unused(0), ctx.unused(0), g.buffer(), fc1_out.buffer()];
        self.elementwise(&ctx.kernels.activation, buffers, params);
        g
    }

    fn activation_backward(
        &self,
        dg: GpuTensor,
        kept: &GpuTensor,
        act: FfnActivation,
        f: usize,
    ) -> GpuTensor {
        let ctx = self.ctx();
        let du = ctx.tensor(kept.len());
        let params = CopyParams {
            count: u(kept.len()),
            neurons: u(f),
            mode: activation_code(act),
            ..CopyParams::default()
        };
        let buffers = [dg.buffer(), ctx.unused(0), du.buffer(), kept.buffer()];
        self.elementwise(&ctx.kernels.activation_backward, buffers, params);
        du
    }

    fn scale_units(
        &self,
        x: &mut GpuTensor,
        b: Batch,
        rows: Range<usize>,
        unit: usize,
        edits: &[Vec<(usize, f32)>],
    ) {
        let w = b.width;
        let mut factors = vec![1f32; b.seqs * w];
        for (f, edit) in factors.chunks_exact_mut(w).zip(edits) {
            for &(n, factor) in edit {
                f[n * unit..(n + 1) * unit]
                    .iter_mut()
                    .for_each(|v| *v *= factor);
            }
        }
        let factors = self.upload(factors);
        let params = CopyParams {
            s_stride: u(w),
            s_row_step: 0,
            d_stride: u(b.rows * w),
            d_row0: u(rows.start),
            mode: copy_mode::MUL,
            ..Self::row_copy(b, &rows)
        };
        self.copy(x, Some(&factors), None, params);
    }

    fn mean_rows(&self, x: &GpuTensor, b: Batch, rows: Range<usize>) -> GpuTensor {
        let ctx = self.ctx();
        let mean = ctx.tensor(b.seqs * b.width);
        let params = CopyParams {
            count: u(b.seqs * b.width),
            rows: u(rows.len()),
            width: u(b.width),
            s_stride: u(b.rows * b.width),
            s_row0: u(rows.start),
            ..CopyParams::default()
        };
        let buffers = [x.buffer(), ctx.unused(0), mean.buffer(), ctx.unused(1)];
        self.elementwise(&ctx.kernels.mean_rows, buffers, params);
        mean
    }

    fn spread_mean(&self, dx: &mut GpuTensor, b: Batch, rows: Range<usize>, g: &GpuTensor) {
        let params = CopyParams {
            s_stride: u(b.width),
            s_row_step: 0,
            d_stride: u(b.rows * b.width),
            d_row0: u(rows.start),
            mode: copy_mode::SET,
            divisor: rows.len() as f32,
            ..Self::row_copy(b, &rows)
        };
        self.copy(dx, Some(g), None, params);
    }

    fn cosine_logits(&self, e: &GpuTensor, seqs: usize, zs: &ZeroShot<GpuTensor>) -> GpuTensor {
        let ctx = self.ctx();
        let dim = e.len() / seqs;
        let classes = zs.text.len() / dim;
        let logits = ctx.tensor(seqs * classes);
        let params = CosineParams {
            seqs: u(seqs),
            dim: u(dim),
            classes: u(classes),
            scale: zs.scale,
        };
        let buffers = [e.buffer(), zs.text.buffer(), ctx.unused(0), logits.buffer()];
        let groups = Context::spread(seqs);
        ctx.dispatch(
            &ctx.kernels.cosine_logits,
            &buffers,
            bytes_of(&params),
            groups,
        );
        logits
    }

    fn cosine_backward(
        &self,
        e: &GpuTensor,
        dlogits: &GpuTensor,
        seqs: usize,
        zs: &ZeroShot<GpuTensor>,
    ) -> GpuTensor {
        let ctx = self.ctx();
        let dim = e.len() / seqs;
        let de = ctx.tensor(seqs * dim);
        let params = CosineParams {
            seqs: u(seqs),
            dim: u(dim),
            classes: u(zs.text.len() / dim),
            scale: zs.scale,
        };
        let buffers = [e.buffer(), zs.text.buffer(), dlogits.buffer(), de.buffer()];
        let groups = Context::spread(seqs);
        ctx.dispatch(
            &ctx.kernels.cosine_backward,
            &buffers,
            bytes_of(&params),
            groups,
        );
        de
    }
}

/// The activation's number in `elementwise.wgsl`.
fn activation_code(act: FfnActivation) -> u32 {
    match act {
        FfnActivation::GeluErf => 0,
        FfnActivation::QuickGelu => 1,
        FfnActivation::GeluTanh => 2,
        FfnActivation::SwiGlu => 3,
    }
}
