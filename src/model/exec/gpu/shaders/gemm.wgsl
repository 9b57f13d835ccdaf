// C = A B (+ bias per column) (+ C), batched, every operand strided: the linear
// layers (x W^T, dy W) and the attention products (Q K^T, P V and their
// gradients) are all this one kernel. A workgroup of 16 x 16 threads computes a
// (16 TM) x (16 TN) tile of C, each thread a block of TM x TN values, over K in
// tiles of 16 staged in workgroup memory, from which a thread reads its rows and
// columns four at a time. Each value is one f32 sum over k in order: the same
// whatever the batch, the tile or the device's thread count.

const TM: u32 = {TM}u;
const TN: u32 = {TN}u;
const BM: u32 = 16u * TM;
const BN: u32 = 16u * TN;
const BK: u32 = 16u;

struct Params {
    m: u32, n: u32, k: u32,
    // A[i][k] = a[a_base + i * a_rs + k * a_cs], B[k][j] = b[b_base + k * b_rs + j * b_cs],
    // C[i][j] = c[c_base + i * c_rs + j]
    a_rs: u32, a_cs: u32, b_rs: u32, b_cs: u32, c_rs: u32,
    // Batch z = outer * inner_count + inner; each operand's base moves by its strides.
    inner_count: u32,
    a_outer: u32, a_inner: u32, b_outer: u32, b_inner: u32, c_outer: u32, c_inner: u32,
    a_off: u32, b_off: u32, c_off: u32,
    // Bit 0: add bias[j]; bit 1: add C's value.
    flags: u32,
}

var<immediate> p: Params;
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// tile_a[kk][r] and tile_b[kk][col], four values to an element.
var<workgroup> tile_a: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> tile_b: array<vec4<f32>, BK * BN / 4u>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let tid = ty * 16u + tx;
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let outer = wg.z / p.inner_count;
    let inner = wg.z % p.inner_count;
    let a_base = p.a_off + outer * p.a_outer + inner * p.a_inner;
    let b_base = p.b_off + outer * p.b_outer + inner * p.b_inner;
    let c_base = p.c_off + outer * p.c_outer + inner * p.c_inner;
    var acc: array<vec4<f32>, TM * TN / 4u>;
    for (var i = 0u; i < TM * TN / 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Stage A's BM x BK tile, reading along its contiguous axis.
        for (var j = 0u; j < BM * BK / 256u; j++) {
            let i = tid + j * 256u;
            var r = i / BK;
            var kk = i % BK;
            if (p.a_cs != 1u) {
                r = i % BM;
                kk = i / BM;
            }
            let gr = row0 + r;
            let gk = k0 + kk;
            var v = 0.0;
            if (gr < p.m && gk < p.k) {
                v = a[a_base + gr * p.a_rs + gk * p.a_cs];
            }
            tile_a[(kk * BM + r) / 4u][r % 4u] = v;
        }
        // And B's BK x BN tile.
        for (var j = 0u; j < BN * BK / 256u; j++) {
            let i = tid + j * 256u;
            var col = i % BN;
            var kk = i / BN;
            if (p.b_cs != 1u) {
                kk = i % BK;
                col = i / BK;
            }
            let gc = col0 + col;
            let gk = k0 + kk;
            var v = 0.0;
            if (gc < p.n && gk < p.k) {
                v = b[b_base + gk * p.b_rs + gc * p.b_cs];
            }
            tile_b[(kk * BN + col) / 4u][col % 4u] = v;
        }
        workgroupBarrier();
        let depth = min(BK, p.k - k0);
        for (var kk = 0u; kk < depth; kk++) {
            var bv: array<vec4<f32>, TN / 4u>;
            for (var j = 0u; j < TN / 4u; j++) {
                bv[j] = tile_b[(kk * BN + tx * TN) / 4u + j];
            }
            for (var i4 = 0u; i4 < TM / 4u; i4++) {
                let av = tile_a[(kk * BM + ty * TM) / 4u + i4];
                for (var i = 0u; i < 4u; i++) {
                    for (var j = 0u; j < TN / 4u; j++) {
                        let at = (i4 * 4u + i) * (TN / 4u) + j;
                        acc[at] = fma(vec4<f32>(av[i]), bv[j], acc[at]);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let gr = row0 + ty * TM + i;
        for (var j = 0u; j < TN; j++) {
            let gc = col0 + tx * TN + j;
            if (gr < p.m && gc < p.n) {
                var v = acc[i * (TN / 4u) + j / 4u][j % 4u];
                if ((p.flags & 1u) != 0u) {
                    v = bias[gc] + v;
                }
                let ci = c_base + gr * p.c_rs + gc;
                if ((p.flags & 2u) != 0u) {
                    v = c[ci] + v;
                }
                c[ci] = v;
            }
        }
    }
}
