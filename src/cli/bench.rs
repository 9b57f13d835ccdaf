//! `neuronpath bench`: per-image time, peak memory and FLOP/s of path finding on
//! the bundled model and on random ViT-Ti/16 and ViT-B/16 (written as timm
//! checkpoints and read back through the loader), in default and fast mode.

use anyhow::{Context, Result};
use neuronpath::attribution::{Attributor, ImageContext, Integration, Method, ScoreForm};
use neuronpath::data::{self, Preset};
use neuronpath::model::{self, exec::GEMM_FLOPS, LoadOptions, Vit};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// The bundled CIFAR-10 ViT (6 layers, 65 tokens).
    Cifar,
    /// Random weights, ViT-Ti/16 shape: 224x224, 12 layers, width 192, FFN 768.
    Tiny,
    /// Random weights, ViT-B/16 shape: 224x224, 12 layers, width 768, FFN 3072.
    Base,
}

#[derive(clap::Args)]
pub struct Args {
    /// Model shapes to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Shape::Cifar, Shape::Tiny, Shape::Base])]
    shapes: Vec<Shape>,
    /// Images per measurement for the 224x224 shapes (the bundled model uses 12).
    #[arg(long, default_value_t = 1)]
    images: usize,
    /// Gauss-Legendre points of fast mode.
    #[arg(long, default_value_t = 6)]
    fast_steps: usize,
    /// Folder with the reference code's `timing-*.json`, to print speed-ups against it.
    #[arg(long, default_value = "../shared/reference")]
    reference: PathBuf,
    /// Worker threads, 1 to 1024 (default: all cores).
    #[arg(long, value_parser = super::in_range(1, 1024))]
    threads: Option<usize>,
    /// Images of the neuron-scan measurement (`neurons --layers all` on the bundled
    /// model against a plain forward pass over the same images; every k-th image of
    /// --scan-images); 0 skips it.
    #[arg(long, default_value_t = 0)]
    scan: usize,
    /// The image folder of the neuron-scan measurement.
    #[arg(long, default_value = "../shared/data/cifar10-test")]
    scan_images: PathBuf,
    /// Also run every measurement on GPU N of `neuronpath devices`, next to the CPU's
    /// in the same run; its % peak is of the device's FMA throughput, measured.
    #[arg(long, value_name = "N")]
    gpu: Option<usize>,
}

/// Where a row of the table ran, and the peak its "% peak" is of (FLOP/s).
struct On {
    name: &'static str,
    device: Option<model::exec::gpu::Device>,
    peak: f64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let peak = peak_flops();
    println!(
        "machine peak: {:.0} GFLOP/s ({} cores x 32 FP32 FLOP/cycle x {:.2} GHz, the clock /proc/cpuinfo reports: boost clocks can exceed it; Zen 4 runs AVX-512 FMA as two 256-bit halves)",
        peak.0 / 1e9,
        peak.1,
        peak.2
    );
    let mut executors = vec![On {
        name: "cpu",
        device: None,
        peak: peak.0,
    }];
    if let Some(index) = args.gpu {
        let device = model::exec::gpu::Device::open(index)?;
        let peak = device.peak_flops();
        println!(
            "gpu {index}: {}, {:.0} GFLOP/s f32 FMA peak (measured); its rows' \"vs ref\" is left out (the reference timings are of its CPU run)",
            device.name(),
            peak / 1e9
        );
        executors.push(On {
            name: "gpu",
            device: Some(device),
            peak,
        });
    }
    println!(
        "{:<6} {:<4} {:<22} {:>10} {:>9} {:>10} {:>12} {:>9} {:>7}",
        "shape", "on", "mode", "s/image", "vs ref", "peak GiB", "GFLOP/image", "GFLOP/s", "% peak"
    );
    super::with_threads(args.threads, || -> Result<()> {
        for &shape in &args.shapes {
            let (vit, images) = build(shape, args.images)?;
            for on in &executors {
                let mut vit = vit.clone();
                if let Some(device) = &on.device {
                    vit.use_gpu(device)?;
                }
                measure(&args, shape, &vit, &images, on);
            }
        }
        if args.scan > 0 {
            super::bench_scan::run(&args.scan_images, args.scan)?;
        }
        Ok(())
    })??;
    Ok(ExitCode::SUCCESS)
}

/// The rows of one shape on one executor: default and fast mode.
fn measure(args: &Args, shape: Shape, vit: &Vit, images: &[Vec<f32>], on: &On) {
    let reference = match on.device {
        None => reference_seconds(&args.reference, shape),
        Some(_) => None,
    };
    for rule in [
        Integration::LeftRiemann(20),
        Integration::GaussLegendre(args.fast_steps),
    ] {
        super::rss::reset_peak();
        GEMM_FLOPS.store(0, Ordering::Relaxed);
        let start = Instant::now();
        find_paths(vit, images, rule);
        let per_image = start.elapsed().as_secs_f64() / images.len() as f64;
        let flops = GEMM_FLOPS.load(Ordering::Relaxed) as f64 / images.len() as f64;
        let ratio = reference.map_or("-".to_string(), |r| format!("{:.2}x", r / per_image));
        let mode = match rule {
            Integration::GaussLegendre(n) => format!("fast (gauss-legendre {n})"),
            Integration::LeftRiemann(m) => format!("default (riemann {m})"),
        };
        println!(
            "{:<6} {:<4} {:<22} {:>10.3} {:>9} {:>10.2} {:>12.1} {:>9.1} {:>6.1}%",
            format!("{shape:?}").to_lowercase(),
            on.name,
            mode,
            per_image,
            ratio,
            super::rss::peak_gib(),
            flops / 1e9,
            flops / per_image / 1e9,
            100.0 * flops / per_image / on.peak
        );
    }
}

/// What `paths` does per image: clean pass, JAS locating, scores of the JAS and activation paths.
fn find_paths(vit: &Vit, images: &[Vec<f32>], rule: Integration) {
    let attributor = Attributor {
        vit,
        rule,
        form: ScoreForm::Reference,
    };
    let batch = vit.images_per_batch(rule.steps());
    for chunk in images.chunks(batch) {
        let contexts: Vec<ImageContext> = chunk
            .iter()
            .enumerate()
            .map(|(i, p)| ImageContext::new(vit, i.to_string(), p.clone(), 0))
            .collect();
        let refs: Vec<&ImageContext> = contexts.iter().collect();
        std::hint::black_box(attributor.find_and_score(
            &refs,
            &[Method::Jas, Method::Activation],
            0,
            |_, _| true,
        ));
    }
}

fn build(shape: Shape, count: usize) -> Result<(Vit, Vec<Vec<f32>>)> {
    let vit = match shape {
        Shape::Cifar => model::load(Path::new(super::DEFAULT_MODEL), &LoadOptions::default())?,
        Shape::Tiny => random_vit(192, 3, 768)?,
        Shape::Base => random_vit(768, 12, 3072)?,
    };
    let count = if shape == Shape::Cifar {
        12
    } else {
        count.max(1)
    };
    // The bundled images, one folder per CIFAR-10 class; only their pixels are used.
    let cifar10 = data::labels::Labels {
        classes: 10,
        ..Default::default()
    };
    let set = data::ImageSet::open(Path::new(super::DEFAULT_IMAGES), &cifar10)?;
    let norm = data::normalization(&vit, Preset::Reference);
    let images = set
        .entries
        .iter()
        .cycle()
        .take(count)
        .map(|e| data::load_image(&e.path, &vit, &norm))
        .collect::<Result<_>>()?;
    Ok((vit, images))
}

/// A 12-layer, 224x224, patch-16 ViT with N(0, 0.02)-like random weights, saved in
/// timm's layout and loaded back (so the benchmark also exercises the loader).
fn random_vit(d: usize, heads: usize, f: usize) -> Result<Vit> {
    let (layers, classes, tokens, patch) = (12, 1000, 197, 16);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07 // uniform, std 0.02
            })
            .collect()
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        (
            "patch_embed.proj.weight".into(),
            vec![d, 3, patch, patch],
            random(d * 3 * patch * patch),
        ),
        ("patch_embed.proj.bias".into(), vec![d], random(d)),
        ("cls_token".into(), vec![1, 1, d], random(d)),
        ("pos_embed".into(), vec![1, tokens, d], random(tokens * d)),
        ("norm.weight".into(), vec![d], vec![1.0; d]),
        ("norm.bias".into(), vec![d], vec![0.0; d]),
        ("head.weight".into(), vec![classes, d], random(classes * d)),
        ("head.bias".into(), vec![classes], vec![0.0; classes]),
    ];
    for i in 0..layers {
        let n = |s: &str| format!("blocks.{i}.{s}");
        for norm in ["norm1", "norm2"] {
            tensors.push((n(&format!("{norm}.weight")), vec![d], vec![1.0; d]));
            tensors.push((n(&format!("{norm}.bias")), vec![d], vec![0.0; d]));
        }
        for (name, out, inp) in [
            ("attn.qkv", 3 * d, d),
            ("attn.proj", d, d),
            ("mlp.fc1", f, d),
            ("mlp.fc2", d, f),
        ] {
            tensors.push((
                n(&format!("{name}.weight")),
                vec![out, inp],
                random(out * inp),
            ));
            tensors.push((n(&format!("{name}.bias")), vec![out], random(out)));
        }
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, v)| {
            (
                name,
                shape,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, b)| {
            Ok((
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let path = std::env::temp_dir().join(format!(
        "neuronpath-bench-vit-{d}-{}.safetensors",
        std::process::id()
    ));
    safetensors::serialize_to_file(views, None, &path)?;
    let vit = model::load(
        &path,
        &LoadOptions {
            heads: Some(heads),
            ..LoadOptions::default()
        },
    );
    std::fs::remove_file(&path).ok();
    vit.context("loading the generated benchmark model")
}

fn reference_seconds(dir: &Path, shape: Shape) -> Option<f64> {
    let file = match shape {
        Shape::Cifar => "vit-cifar10-dev.json",
        Shape::Tiny => "timing-vit-tiny16-random.json",
        Shape::Base => "timing-vit-base16-random.json",
    };
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(file)).ok()?).ok()?;
    json["wall_s_per_image"].as_f64()
}

/// (FLOP/s, cores, GHz): cores x 32 FP32 FLOP/cycle x the clock /proc/cpuinfo reports.
fn peak_flops() -> (f64, usize, f64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mhz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        })
        .unwrap_or(2600.0);
    (cores as f64 * 32.0 * mhz * 1e6, cores, mhz / 1000.0)
}
