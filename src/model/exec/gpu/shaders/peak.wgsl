// The device's f32 FMA throughput: four independent vec4 FMA chains per thread,
// nothing read, one value written (so the compiler keeps the work).

@group(0) @binding(0) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    var a = vec4<f32>(f32(id.x) * 1e-9);
    var b = a + vec4<f32>(0.1);
    var c = a + vec4<f32>(0.2);
    var d = a + vec4<f32>(0.3);
    let m = vec4<f32>(0.999999);
    let k = vec4<f32>(1e-7);
    for (var i = 0u; i < 1024u; i++) {
        a = fma(a, m, k);
        b = fma(b, m, k);
        c = fma(c, m, k);
        d = fma(d, m, k);
    }
    out[id.x] = a.x + b.y + c.z + d.w;
}
