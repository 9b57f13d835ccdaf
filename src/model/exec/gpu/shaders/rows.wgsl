// Row-wise steps, one workgroup of 64 threads per row: LayerNorm forward and
// backward, the attention softmax and its gradient. Sums over a row are tree
// reductions in workgroup memory.

const WG: u32 = 64u;

struct Params {
    // Rows in all (one workgroup each).
    count: u32,
    // Values per row.
    width: u32,
    // Rows of a packed row set per sequence, and of the full sequence they sit in
    // (the LayerNorm backward adds into rows row0.. of each full sequence).
    rows: u32,
    full_rows: u32,
    row0: u32,
    eps: f32,
    scale: f32,
    // Bit 0: keep xhat and rstd (forward).
    flags: u32,
}

var<immediate> p: Params;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> xhat: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>;

var<workgroup> partial: array<f32, WG>;
var<workgroup> partial2: array<f32, WG>;

// The sum of each thread's `v` (and `w`) over the workgroup.
fn reduce2(t: u32, v: f32, w: f32) -> vec2<f32> {
    partial[t] = v;
    partial2[t] = w;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            partial[t] += partial[t + stride];
            partial2[t] += partial2[t + stride];
        }
        workgroupBarrier();
    }
    let s = vec2<f32>(partial[0], partial2[0]);
    workgroupBarrier();
    return s;
}

fn row_max(t: u32, v: f32) -> f32 {
    partial[t] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            partial[t] = max(partial[t], partial[t + stride]);
        }
        workgroupBarrier();
    }
    let m = partial[0];
    workgroupBarrier();
    return m;
}

// y = LayerNorm(x) per row (and xhat, rstd).
@compute @workgroup_size(64, 1, 1)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = group_index(wg, groups);
    if (row >= p.count) {
        return;
    }
    let t = lid.x;
    let d = p.width;
    let base = row * d;
    var s = 0.0;
    for (var i = t; i < d; i += WG) {
        s += x[base + i];
    }
    let mean = reduce2(t, s, 0.0).x / f32(d);
    var v = 0.0;
    for (var i = t; i < d; i += WG) {
        let c = x[base + i] - mean;
        v += c * c;
    }
    let inv = 1.0 / sqrt(reduce2(t, v, 0.0).x / f32(d) + p.eps);
    for (var i = t; i < d; i += WG) {
        let h = (x[base + i] - mean) * inv;
        y[base + i] = h * gamma[i] + beta[i];
        if ((p.flags & 1u) != 0u) {
            xhat[base + i] = h;
        }
    }
    if ((p.flags & 1u) != 0u && t == 0u) {
        rstd[row] = inv;
    }
}

// dx[rows row0.. of each full sequence] += LayerNorm backward of the packed dy
// (bound as x), given xhat, rstd and gamma (bound as gamma); dx is bound as y.
@compute @workgroup_size(64, 1, 1)
fn layer_norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = group_index(wg, groups);
    if (row >= p.count) {
        return;
    }
    let t = lid.x;
    let d = p.width;
    let base = row * d;
    let seq = row / p.rows;
    let out = (seq * p.full_rows + p.row0 + row % p.rows) * d;
    var sg = 0.0;
    var sgx = 0.0;
    for (var i = t; i < d; i += WG) {
        let g = x[base + i] * gamma[i];
        sg += g;
        sgx += g * xhat[base + i];
    }
    let sums = reduce2(t, sg, sgx) / f32(d);
    let r = rstd[row];
    for (var i = t; i < d; i += WG) {
        let g = x[base + i] * gamma[i];
        y[out + i] += r * (g - sums.x - xhat[base + i] * sums.y);
    }
}

// y = softmax(scale * x) per row (the attention weights).
@compute @workgroup_size(64, 1, 1)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = group_index(wg, groups);
    if (row >= p.count) {
        return;
    }
    let t = lid.x;
    let n = p.width;
    let base = row * n;
    var m = -3.4028235e38;
    for (var i = t; i < n; i += WG) {
        m = max(m, y[base + i] * p.scale);
    }
    m = row_max(t, m);
    var s = 0.0;
    for (var i = t; i < n; i += WG) {
        let e = exp_(y[base + i] * p.scale - m);
        y[base + i] = e;
        s += e;
    }
    let inv = 1.0 / reduce2(t, s, 0.0).x;
    for (var i = t; i < n; i += WG) {
        y[base + i] *= inv;
    }
}

// dS = P * (dP - rowsum(dP * P)) * scale per row: P bound as x, dP (in place) as y.
@compute @workgroup_size(64, 1, 1)
fn softmax_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = group_index(wg, groups);
    if (row >= p.count) {
        return;
    }
    let t = lid.x;
    let n = p.width;
    let base = row * n;
    var dot = 0.0;
    for (var i = t; i < n; i += WG) {
        dot += y[base + i] * x[base + i];
    }
    dot = reduce2(t, dot, 0.0).x;
    for (var i = t; i < n; i += WG) {
        y[base + i] = x[base + i] * (y[base + i] - dot) * p.scale;
    }
}
