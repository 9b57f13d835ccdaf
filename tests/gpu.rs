//! The GPU executor step by step against the CPU executor: every step of a pass
//! (`Executor`'s methods) on the same inputs, at shapes that reach every kernel's
//! edges (ragged tiles, both GEMM tile sizes, strided and transposed operands,
//! more workgroups than one dispatch dimension holds). The CPU executor is itself
//! checked against PyTorch by the fidelity tests; here the two must agree within
//! f32 rounding: 2e-5 of the largest value of each output.

mod common;
use common::executors;
use neuronpath::model::exec::gpu::Gpu;
use neuronpath::model::exec::{AttentionShape, Batch, Cpu, Executor, Write};
use neuronpath::model::vit::{LayerNorm, Linear, ZeroShot};
use neuronpath::model::{self, FfnActivation, LoadOptions};
use neuronpath::numeric::SplitMix64;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| rng.below(1 << 20) as f32 / (1 << 19) as f32 - 1.0)
        .collect()
}

fn linear<E: Executor>(e: &E, inp: usize, out: usize, seed: u64) -> Linear<E::Tensor> {
    Linear {
        w: e.upload(values(out * inp, seed)),
        b: e.upload(values(out, seed + 1)),
    }
}

fn norm<E: Executor>(e: &E, d: usize, seed: u64) -> LayerNorm<E::Tensor> {
    LayerNorm {
        gamma: e.upload(values(d, seed).iter().map(|v| 1.0 + 0.5 * v).collect()),
        beta: e.upload(values(d, seed + 1)),
        eps: 1e-6,
    }
}

/// Every step of a pass at several shapes, as named host outputs.
fn steps<E: Executor>(e: &E) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    let mut put = |name: String, t: &E::Tensor| out.push((name, e.download(t)));
    for (rows, inp, o) in [(1, 3, 5), (7, 33, 65), (130, 128, 512), (300, 200, 129)] {
        let layer = linear(e, inp, o, 10);
        let x = e.upload(values(rows * inp, 11));
        let y = e.linear(&x, rows, &layer);
        put(format!("linear {rows}x{inp}->{o}"), &y);
        let dx = e.linear_backward(&y, rows, &layer.w, o);
        put(format!("linear_backward {rows}x{o}->{inp}"), &dx);
    }
    for (rows, d) in [(3, 5), (70, 64), (9, 130), (4, 768), (70_000, 4)] {
        let ln = norm(e, d, 20);
        let x = e.upload(values(rows * d, 21).iter().map(|v| 3.0 * v + 0.7).collect());
        let (y, stats) = e.layer_norm(&x, &ln, true);
        let stats = stats.expect("stats asked for");
        put(format!("layer_norm {rows}x{d}"), &y);
        put(format!("layer_norm xhat {rows}x{d}"), &stats.xhat);
        put(format!("layer_norm rstd {rows}x{d}"), &stats.rstd);
        // The backward into rows 1..3 of sequences of 4 rows (rows / 4 of them).
        if rows % 4 == 0 {
            let seqs = rows / 4;
            let b = Batch::new(seqs, 4, d);
            let mut dx = e.upload(values(b.len(), 22));
            let packed = e.rows(&x, b, 1..3);
            let (_, stats) = e.layer_norm(&packed, &ln, true);
            let dy = e.upload(values(seqs * 2 * d, 23));
            e.layer_norm_backward(&mut dx, b, 1..3, &dy, &stats.unwrap(), &ln.gamma);
            put(format!("layer_norm_backward {rows}x{d}"), &dx);
        }
    }
    let shapes = [
        (3, 17, 17, 2, 8),
        (3, 17, 1, 2, 8),
        (2, 65, 65, 4, 32),
        (66_000, 2, 2, 1, 4),
    ];
    for (seqs, tokens, queries, heads, head_dim) in shapes {
        let a = AttentionShape {
            seqs,
            tokens,
            queries,
            heads,
            head_dim,
        };
        let d = heads * head_dim;
        let qkv = e.upload(values(seqs * tokens * 3 * d, 30));
        let (probs, z) = e.attention(&qkv, a);
        let name = format!("attention {seqs}x{tokens} q{queries} {heads}x{head_dim}");
        put(format!("{name} probs"), &probs);
        put(format!("{name} out"), &z);
        let dout = e.upload(values(seqs * queries * d, 31));
        put(
            format!("{name} backward"),
            &e.attention_backward(&qkv, &probs, &dout, a),
        );
    }
    for act in [
        FfnActivation::GeluErf,
        FfnActivation::QuickGelu,
        FfnActivation::GeluTanh,
        FfnActivation::SwiGlu,
    ] {
        let (rows, f) = (37, 24);
        for keep in [false, true] {
            let mut u = e.upload(
                values(rows * act.fc1_width(f), 40)
                    .iter()
                    .map(|v| 4.0 * v)
                    .collect(),
            );
            let g = e.activation(&mut u, act, f, keep);
            put(format!("{act:?} keep {keep}"), &g);
            if keep {
                put(format!("{act:?} derivative"), &u);
                let dg = e.upload(values(rows * f, 41));
                put(
                    format!("{act:?} backward"),
                    &e.activation_backward(dg, &u, act, f),
                );
            }
        }
    }
    let b = Batch::new(5, 7, 6);
    let x = e.upload(values(b.len(), 50));
    put("rows".into(), &e.rows(&x, b, 2..5));
    for (name, src, how) in [
        ("write packed", values(5 * 3 * 6, 51), Write::Set),
        ("add packed", values(5 * 3 * 6, 52), Write::Add),
        ("write shared", values(3 * 6, 53), Write::Set),
        ("add shared", values(3 * 6, 54), Write::Add),
    ] {
        let mut dst = e.duplicate(&x);
        e.write_rows(&mut dst, b, 1..4, &e.upload(src), how);
        put(name.into(), &dst);
    }
    let mut zeroed = e.duplicate(&x);
    e.zero_rows(&mut zeroed, b, 0..2);
    put("zero_rows".into(), &zeroed);
    put("gather".into(), &e.gather(&x, 5, &[4, 0, 0, 2, 3, 1, 4]));
    for unit in [1, 2] {
        let mut scaled = e.duplicate(&x);
        let edits: Vec<Vec<(usize, f32)>> = (0..5)
            .map(|s| vec![(s % 3, 0.0), ((s + 1) % 3, 2.0)])
            .collect();
        e.scale_units(&mut scaled, b, 3..7, unit, &edits);
        put(format!("scale_units unit {unit}"), &scaled);
    }
    let mean = e.mean_rows(&x, b, 2..7);
    put("mean_rows".into(), &mean);
    let mut spread = e.zeros(b.len());
    e.spread_mean(&mut spread, b, 2..7, &mean);
    put("spread_mean".into(), &spread);
    let zs = ZeroShot {
        text: e.upload(values(9 * 12, 60)),
        scale: 100.0,
        bias: 0.0,
    };
    let emb = e.upload(values(4 * 12, 61));
    put("cosine_logits".into(), &e.cosine_logits(&emb, 4, &zs));
    let dl = e.upload(values(4 * 9, 62));
    put(
        "cosine_backward".into(),
        &e.cosine_backward(&emb, &dl, 4, &zs),
    );
    out
}

#[test]
fn every_step_on_the_gpu_matches_the_cpu() {
    // The executor needs a model's weights; the steps use only their own.
    let vit = model::load(
        &common::shared("fixtures/tiny-vit-hf"),
        &LoadOptions::default(),
    )
    .unwrap();
    let gpu = Gpu::new(executors::device(), &vit.weights).unwrap();
    let (want, got) = (steps(&Cpu), steps(&gpu));
    assert_eq!(want.len(), got.len());
    for ((name, want), (_, got)) in want.iter().zip(&got) {
        assert_eq!(want.len(), got.len(), "{name}: length");
        let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            assert!(
                (w - g).abs() <= 2e-5 * scale,
                "{name}[{i}]: gpu {g} vs cpu {w} (largest value {scale})"
            );
        }
    }
}

/// A row of a GEMM is the same bits whatever the other rows: each value is one
/// sum over k in order, so a path does not depend on the batch it was found in.
#[test]
fn gpu_rows_do_not_depend_on_the_batch() {
    let vit = model::load(
        &common::shared("fixtures/tiny-vit-hf"),
        &LoadOptions::default(),
    )
    .unwrap();
    let e = Gpu::new(executors::device(), &vit.weights).unwrap();
    for (inp, out) in [(128, 512), (512, 128), (33, 10)] {
        let layer = linear(&e, inp, out, 70);
        let x = values(300 * inp, 71);
        let first = |rows: usize| {
            let y = e.linear(&e.upload(x[..rows * inp].to_vec()), rows, &layer);
            e.download(&y)[..out].to_vec()
        };
        let want = first(1);
        for rows in [2, 64, 65, 129, 300] {
            assert!(
                first(rows) == want,
                "{inp}x{out}: row 0 changed with {rows} rows"
            );
        }
    }
}
