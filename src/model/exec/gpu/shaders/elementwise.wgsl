// Element-wise steps, one thread per value: the FFN non-linearities (keeping
// what their backward multiplies by) and their backward, and a general strided
// row copy that serves selection, writes, gathers, scaling and the mean's spread.

struct Params {
    // Values to compute.
    count: u32,
    // FFN: neurons per row and the activation (0 erf GELU, 1 quick GELU, 2 tanh
    // GELU, 3 SwiGLU); bit 4 of `mode`: keep the derivative.
    neurons: u32,
    mode: u32,
    // Copy: a value (seq, row, col) of `rows` x `width` per sequence goes from
    // src[s_off + s_seq * s_stride + (s_row0 + row * s_row_step) * width + col]
    // to dst[d_off + seq * d_stride + (d_row0 + row) * width + col], s_seq being
    // index[seq] (bit 8 of `mode`), 0 (bit 9: one sequence for all) or seq.
    rows: u32,
    width: u32,
    s_stride: u32,
    s_row0: u32,
    s_row_step: u32,
    d_stride: u32,
    d_row0: u32,
    s_off: u32,
    d_off: u32,
    // The value written: dst = src / divisor (mode 0), dst += src (1), dst *= src
    // (2), dst = 0 (3); low bits of `mode`.
    divisor: f32,
}

var<immediate> p: Params;
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> aux: array<f32>;

fn thread_index(wg: vec3<u32>, groups: vec3<u32>, lid: vec3<u32>) -> u32 {
    return group_index(wg, groups) * 256u + lid.x;
}

// dst = act(aux) for aux = fc1's output; with keep, aux becomes the derivative.
@compute @workgroup_size(256, 1, 1)
fn activation(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = thread_index(wg, groups, lid);
    if (i >= p.count) {
        return;
    }
    let act = p.mode & 15u;
    let keep = (p.mode & 16u) != 0u;
    if (act == 3u) {
        // SwiGLU on rows [gate (f) | up (f)]: dst = silu(gate) * up.
        let f = p.neurons;
        let gi = (i / f) * 2u * f + i % f;
        let gate = aux[gi];
        let up = aux[gi + f];
        let s = sigmoid(gate);
        let silu = gate * s;
        dst[i] = silu * up;
        if (keep) {
            aux[gi] = up * s * (1.0 + gate * (1.0 - s));
            aux[gi + f] = silu;
        }
        return;
    }
    let u = aux[i];
    var g = 0.0;
    var du = 0.0;
    if (act == 0u) {
        let eg = erf_and_gaussian(u * 0.70710677);
        let cdf = 0.5 * (1.0 + eg.x);
        g = u * cdf;
        du = cdf + u * 0.3989423 * eg.y;
    } else if (act == 1u) {
        let s = sigmoid(1.702 * u);
        g = u * s;
        du = s + 1.702 * u * s * (1.0 - s);
    } else {
        let k = 0.7978846;
        let z = k * (u + 0.044715 * u * u * u);
        let th = 1.0 - 2.0 / (exp_(2.0 * z) + 1.0);
        g = 0.5 * u * (1.0 + th);
        du = 0.5 * (1.0 + th) + 0.5 * u * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * u * u);
    }
    dst[i] = g;
    if (keep) {
        aux[i] = du;
    }
}

// The gradient at fc1's output: dst = src (dg) * aux (kept) per value, or for
// SwiGLU (count: values of dst, [rows, 2f]) dst[r][j] = dg[r][j % f] * kept[r][j].
@compute @workgroup_size(256, 1, 1)
fn activation_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = thread_index(wg, groups, lid);
    if (i >= p.count) {
        return;
    }
    if ((p.mode & 15u) == 3u) {
        let f = p.neurons;
        let row = i / (2u * f);
        dst[i] = src[row * f + (i % (2u * f)) % f] * aux[i];
    } else {
        dst[i] = src[i] * aux[i];
    }
}

@compute @workgroup_size(256, 1, 1)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = thread_index(wg, groups, lid);
    if (i >= p.count) {
        return;
    }
    let per_seq = p.rows * p.width;
    let seq = i / per_seq;
    let row = (i % per_seq) / p.width;
    let col = i % p.width;
    var s_seq = seq;
    if ((p.mode & 256u) != 0u) {
        s_seq = index[seq];
    } else if ((p.mode & 512u) != 0u) {
        s_seq = 0u;
    }
    let d = p.d_off + seq * p.d_stride + (p.d_row0 + row) * p.width + col;
    let how = p.mode & 15u;
    if (how == 3u) {
        dst[d] = 0.0;
        return;
    }
    let v = src[p.s_off + s_seq * p.s_stride + (p.s_row0 + row * p.s_row_step) * p.width + col];
    if (how == 0u) {
        dst[d] = v / p.divisor;
    } else if (how == 1u) {
        dst[d] = dst[d] + v;
    } else {
        dst[d] = dst[d] * v;
    }
}

// dst[seq][col] = mean over rows s_row0..s_row0+rows of src[seq][row][col]
// (s_stride values per sequence), summed in row order.
@compute @workgroup_size(256, 1, 1)
fn mean_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = thread_index(wg, groups, lid);
    if (i >= p.count) {
        return;
    }
    let seq = i / p.width;
    let col = i % p.width;
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        s += src[seq * p.s_stride + (p.s_row0 + r) * p.width + col];
    }
    dst[i] = s / f32(p.rows);
}
