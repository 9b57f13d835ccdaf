// Helpers every kernel shares (prepended to each shader). The transcendental
// functions are the CPU engine's own (src/numeric.rs, src/model/exec/cpu/kernels.rs),
// so both executors compute the same approximations, not the driver's.

// The linear index of a workgroup in a dispatch laid out as (x, y) to stay within
// the per-dimension limit of 65535 workgroups.
fn group_index(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.y * groups.x + wg.x;
}

// e^x: x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor for e^r (numeric::exp).
fn exp_(x: f32) -> f32 {
    let xc = clamp(x, -87.3, 88.7);
    let n = round(xc * 1.442695);
    let r = (xc - n * 0.69314575) - n * 1.4286068e-6;
    let q = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666667 + r * (0.041666668 + r * (0.008333334 + r * 0.0013888889)))));
    return bitcast<f32>(u32(i32(n) + 127) << 23u) * q;
}

// (erf(x), exp(-x^2)), Abramowitz & Stegun 7.1.26 (kernels::erf_and_gaussian).
fn erf_and_gaussian(x: f32) -> vec2<f32> {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.2548296 + t * (-0.28449674 + t * (1.4214137 + t * (-1.453152 + t * 1.0614054))));
    let gaussian = exp_(-a * a);
    var e = 1.0 - poly * gaussian;
    if (x < 0.0) {
        e = -e;
    }
    return vec2<f32>(e, gaussian);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp_(-x));
}
