// CLIP's zero-shot head: logits = scale * <e / |e|, text[c]> and its gradient.

const WG: u32 = 64u;

struct Params {
    seqs: u32,
    dim: u32,
    classes: u32,
    scale: f32,
}

var<immediate> p: Params;
// e [S, dim], text [classes, dim], dlogits [S, classes]
@group(0) @binding(0) var<storage, read> e: array<f32>;
@group(0) @binding(1) var<storage, read> text: array<f32>;
@group(0) @binding(2) var<storage, read> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

fn sum(t: u32, v: f32) -> f32 {
    partial[t] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            partial[t] += partial[t + stride];
        }
        workgroupBarrier();
    }
    let s = partial[0];
    workgroupBarrier();
    return s;
}

// One workgroup per sequence: out [S, classes].
@compute @workgroup_size(64, 1, 1)
fn logits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = group_index(wg, groups);
    if (s >= p.seqs) {
        return;
    }
    let t = lid.x;
    let base = s * p.dim;
    var sq = 0.0;
    for (var j = t; j < p.dim; j += WG) {
        sq += e[base + j] * e[base + j];
    }
    let inv = 1.0 / sqrt(sum(t, sq));
    for (var c = t; c < p.classes; c += WG) {
        var dot = 0.0;
        for (var j = 0u; j < p.dim; j++) {
            dot += e[base + j] * text[c * p.dim + j];
        }
        out[s * p.classes + c] = p.scale * inv * dot;
    }
}

// One workgroup per sequence: out [S, dim] = (u - (u . e^) e^) / |e|, where
// u = scale * sum_c dlogits[c] text[c].
@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = group_index(wg, groups);
    if (s >= p.seqs) {
        return;
    }
    let t = lid.x;
    let base = s * p.dim;
    var sq = 0.0;
    for (var j = t; j < p.dim; j += WG) {
        sq += e[base + j] * e[base + j];
    }
    let inv = 1.0 / sqrt(sum(t, sq));
    var along = 0.0;
    for (var j = t; j < p.dim; j += WG) {
        var u = 0.0;
        for (var c = 0u; c < p.classes; c++) {
            u += p.scale * dlogits[s * p.classes + c] * text[c * p.dim + j];
        }
        out[base + j] = u;
        along += u * e[base + j] * inv;
    }
    along = sum(t, along);
    for (var j = t; j < p.dim; j += WG) {
        out[base + j] = (out[base + j] - along * e[base + j] * inv) * inv;
    }
}
