//! `neuronpath bench`: per-image time, peak memory and FLOP/s of path finding on
//! the bundled model and on random ViT-Ti/16, ViT-B/16 and CLIP ViT-B/32 (written as
//! timm checkpoints and read back through the loader), in default and fast mode.

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
    /// Random weights, CLIP ViT-B/32's image tower: 224x224, patch 32 (50 tokens), 12
    /// layers, width 768, FFN 3072, quick GELU, a norm before block 0, zero-shot over
    /// 1000 classes through a 512-wide projection.
    ClipB32,
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
        "{:<8} {:<4} {:<22} {:>10} {:>9} {:>10} {:>12} {:>9} {:>7}",
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
            "{:<8} {:<4} {:<22} {:>10.3} {:>9} {:>10.2} {:>12.1} {:>9.1} {:>6.1}%",
            clap::ValueEnum::to_possible_value(&shape)
                .map_or(String::new(), |v| v.get_name().to_string()),
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
        Shape::Tiny => random_vit(Random::vit(192, 3, 768))?,
        Shape::Base => random_vit(Random::vit(768, 12, 3072))?,
        Shape::ClipB32 => random_vit(Random {
            patch: 32,
            clip: true,
            ..Random::vit(768, 12, 3072)
        })?,
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

/// The shape of a random 12-layer, 224x224 benchmark model.
struct Random {
    d: usize,
    heads: usize,
    f: usize,
    patch: usize,
    /// CLIP's image tower (timm's names): a norm before block 0, a patch embedding
    /// without bias, quick GELU, a 512-wide projection classified zero-shot.
    clip: bool,
}

impl Random {
    fn vit(d: usize, heads: usize, f: usize) -> Random {
        Random {
            d,
            heads,
            f,
            patch: 16,
            clip: false,
        }
    }
}

/// A uniform generator with std 0.02, seeded.
fn uniform() -> impl FnMut(usize) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    move |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07 // uniform, std 0.02
            })
            .collect()
    }
}

/// A random model of shape `r`, saved in timm's layout and loaded back (so the
/// benchmark also exercises the loader); a CLIP tower with a random zero-shot
/// classifier of 1000 unit rows beside it.
fn random_vit(r: Random) -> Result<Vit> {
    let Random { d, f, patch, .. } = r;
    let (layers, tokens) = (12, (224 / patch).pow(2) + 1);
    // A CLIP tower's head is its projection to the 512-wide embedding.
    let classes = if r.clip { 512 } else { 1000 };
    let mut random = uniform();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![(
        "patch_embed.proj.weight".into(),
        vec![d, 3, patch, patch],
        random(d * 3 * patch * patch),
    )];
    match r.clip {
        true => tensors.extend([
            ("norm_pre.weight".into(), vec![d], vec![1.0; d]),
            ("norm_pre.bias".into(), vec![d], vec![0.0; d]),
        ]),
        false => tensors.push(("patch_embed.proj.bias".into(), vec![d], random(d))),
    }
    tensors.extend([
        ("cls_token".into(), vec![1, 1, d], random(d)),
        ("pos_embed".into(), vec![1, tokens, d], random(tokens * d)),
        ("norm.weight".into(), vec![d], vec![1.0; d]),
        ("norm.bias".into(), vec![d], vec![0.0; d]),
        ("head.weight".into(), vec![classes, d], random(classes * d)),
        ("head.bias".into(), vec![classes], vec![0.0; classes]),
    ]);
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
    let stem = std::env::temp_dir().join(format!(
        "neuronpath-bench-vit-{d}-{patch}-{}",
        std::process::id()
    ));
    let path = stem.with_extension("safetensors");
    safetensors::serialize_to_file(views, None, &path)?;
    let classifier = stem.with_extension("npy");
    if r.clip {
        let rows: Vec<f32> = random(1000 * classes)
            .chunks_exact(classes)
            .flat_map(|row| {
                let length = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                row.iter().map(move |v| v / length).collect::<Vec<_>>()
            })
            .collect();
        write_npy(&classifier, &[1000, classes], &rows)?;
    }
    let vit = model::load(
        &path,
        &LoadOptions {
            heads: Some(r.heads),
            activation: r.clip.then_some(model::FfnActivation::QuickGelu),
            classifier: r.clip.then(|| classifier.clone()),
            logit_scale: r.clip.then_some(100.0),
            ..LoadOptions::default()
        },
    );
    std::fs::remove_file(&path).ok();
    std::fs::remove_file(&classifier).ok();
    vit.context("loading the generated benchmark model")
}

/// A little-endian float32 `.npy` of `shape`.
fn write_npy(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let dims = match dims[..] {
        [ref one] => format!("{one},"),
        _ => dims.join(", "),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}

fn reference_seconds(dir: &Path, shape: Shape) -> Option<f64> {
    let file = match shape {
        Shape::Cifar => "vit-cifar10-dev.json",
        Shape::Tiny => "timing-vit-tiny16-random.json",
        Shape::Base => "timing-vit-base16-random.json",
        Shape::ClipB32 => return None,
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
