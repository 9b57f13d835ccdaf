//! `neuronpath bench`: per-image time, peak memory and FLOP/s of path finding on
//! the bundled model and on random ViT-Ti/16, ViT-B/16, CLIP ViT-B/32 and SigLIP B/16
//! (written as timm checkpoints, SigLIP as a Hugging Face folder, and read back through
//! the loader), in default and fast mode.

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
    /// Random weights, SigLIP B/16's vision tower: 224x224, patch 16 (196 tokens, no
    /// CLS), 12 layers, width 768, FFN 3072, tanh GELU, the attention-pooling head,
    /// zero-shot over 1000 classes with a sigmoid per class.
    SiglipB16,
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
        "{:<10} {:<4} {:<22} {:>10} {:>9} {:>10} {:>12} {:>9} {:>7}",
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
            "{:<10} {:<4} {:<22} {:>10.3} {:>9} {:>10.2} {:>12.1} {:>9.1} {:>6.1}%",
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
        Shape::Tiny => random_vit(Random::of(Kind::Vit, 192, 3, 768))?,
        Shape::Base => random_vit(Random::of(Kind::Vit, 768, 12, 3072))?,
        Shape::ClipB32 => random_vit(Random {
            patch: 32,
            ..Random::of(Kind::Clip, 768, 12, 3072)
        })?,
        Shape::SiglipB16 => random_vit(Random::of(Kind::Siglip, 768, 12, 3072))?,
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

/// Which family a random benchmark model is, and so how it is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A plain ViT in timm's names, a 1000-class linear head.
    Vit,
    /// CLIP's image tower in timm's names: a norm before block 0, a patch embedding
    /// without bias, quick GELU, a 512-wide projection classified zero-shot.
    Clip,
    /// SigLIP's vision tower as Hugging Face saves it (`config.json` and
    /// `model.safetensors`): no CLS token, tanh GELU, the attention-pooling head,
    /// classified zero-shot with a sigmoid per class.
    Siglip,
}

/// The shape of a random 12-layer, 224x224 benchmark model.
struct Random {
    kind: Kind,
    d: usize,
    heads: usize,
    f: usize,
    patch: usize,
}

impl Random {
    fn of(kind: Kind, d: usize, heads: usize, f: usize) -> Random {
        Random {
            kind,
            d,
            heads,
            f,
            patch: 16,
        }
    }

    /// The width of the image embedding a zero-shot kind is classified in.
    fn embedding(&self) -> Option<usize> {
        match self.kind {
            Kind::Vit => None,
            Kind::Clip => Some(512),
            Kind::Siglip => Some(self.d),
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

/// Named tensors being written, with random weights and unit norms.
struct Writer<R> {
    random: R,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl<R: FnMut(usize) -> Vec<f32>> Writer<R> {
    fn random(&mut self, name: &str, shape: &[usize]) {
        let values = (self.random)(shape.iter().product());
        self.tensors.push((name.into(), shape.to_vec(), values));
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize) {
        self.random(&format!("{name}.weight"), &[out, inp]);
        self.random(&format!("{name}.bias"), &[out]);
    }

    /// A LayerNorm at identity: `weight` 1, `bias` 0.
    fn norm(&mut self, weight: &str, bias: &str, d: usize) {
        self.tensors.push((weight.into(), vec![d], vec![1.0; d]));
        self.tensors.push((bias.into(), vec![d], vec![0.0; d]));
    }

    /// `{name}.weight` and `{name}.bias`.
    fn norm_named(&mut self, name: &str, d: usize) {
        self.norm(&format!("{name}.weight"), &format!("{name}.bias"), d);
    }

    fn save(self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
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
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    b,
                )?;
                Ok((name.clone(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize_to_file(views, None, path)
            .with_context(|| format!("{}: cannot write", path.display()))
    }
}

/// A random ViT or CLIP tower in timm's names.
fn timm_tensors<R: FnMut(usize) -> Vec<f32>>(w: &mut Writer<R>, r: &Random) {
    let Random { d, f, patch, .. } = *r;
    let tokens = (224 / patch).pow(2) + 1;
    // A CLIP tower's head is its projection to the embedding.
    let classes = r.embedding().unwrap_or(1000);
    w.random("patch_embed.proj.weight", &[d, 3, patch, patch]);
    match r.kind {
        Kind::Clip => w.norm_named("norm_pre", d),
        _ => w.random("patch_embed.proj.bias", &[d]),
    }
    w.random("cls_token", &[1, 1, d]);
    w.random("pos_embed", &[1, tokens, d]);
    w.norm_named("norm", d);
    w.random("head.weight", &[classes, d]);
    w.tensors
        .push(("head.bias".into(), vec![classes], vec![0.0; classes]));
    for i in 0..12 {
        let n = |s: &str| format!("blocks.{i}.{s}");
        w.norm_named(&n("norm1"), d);
        w.norm_named(&n("norm2"), d);
        w.linear(&n("attn.qkv"), 3 * d, d);
        w.linear(&n("attn.proj"), d, d);
        w.linear(&n("mlp.fc1"), f, d);
        w.linear(&n("mlp.fc2"), d, f);
    }
}

/// A random SigLIP vision tower in Hugging Face's names (`SiglipVisionModel`).
fn siglip_tensors<R: FnMut(usize) -> Vec<f32>>(w: &mut Writer<R>, r: &Random) {
    let Random { d, f, patch, .. } = *r;
    let tokens = (224 / patch).pow(2);
    w.random("embeddings.patch_embedding.weight", &[d, 3, patch, patch]);
    w.random("embeddings.patch_embedding.bias", &[d]);
    w.random("embeddings.position_embedding.weight", &[tokens, d]);
    for i in 0..12 {
        let n = |s: &str| format!("encoder.layers.{i}.{s}");
        w.norm_named(&n("layer_norm1"), d);
        w.norm_named(&n("layer_norm2"), d);
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            w.linear(&n(&format!("self_attn.{proj}")), d, d);
        }
        w.linear(&n("mlp.fc1"), f, d);
        w.linear(&n("mlp.fc2"), d, f);
    }
    w.norm_named("post_layernorm", d);
    w.random("head.probe", &[1, 1, d]);
    w.random("head.attention.in_proj_weight", &[3 * d, d]);
    w.random("head.attention.in_proj_bias", &[3 * d]);
    w.linear("head.attention.out_proj", d, d);
    w.norm_named("head.layernorm", d);
    w.linear("head.mlp.fc1", f, d);
    w.linear("head.mlp.fc2", d, f);
}

/// A random model of shape `r`, saved in its layout (timm's; Hugging Face's for
/// SigLIP) and loaded back, so the benchmark also exercises the loader; a zero-shot
/// kind with a random classifier of 1000 unit rows.
fn random_vit(r: Random) -> Result<Vit> {
    let mut w = Writer {
        random: uniform(),
        tensors: Vec::new(),
    };
    let dir = std::env::temp_dir().join(format!(
        "neuronpath-bench-{}-{}-{}",
        r.d,
        r.patch,
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    // The classifier's rows first: saving consumes the writer.
    let rows = r.embedding().map(|e| (e, (w.random)(1000 * e)));
    let path = match r.kind {
        Kind::Siglip => {
            siglip_tensors(&mut w, &r);
            let config = serde_json::json!({
                "model_type": "siglip_vision_model",
                "hidden_size": r.d,
                "intermediate_size": r.f,
                "num_hidden_layers": 12,
                "num_attention_heads": r.heads,
                "image_size": 224,
                "patch_size": r.patch,
            });
            std::fs::write(dir.join("config.json"), config.to_string())?;
            w.save(&dir.join("model.safetensors"))?;
            dir.clone()
        }
        _ => {
            timm_tensors(&mut w, &r);
            let path = dir.join("model.safetensors");
            w.save(&path)?;
            path
        }
    };
    let classifier = dir.join("text.npy");
    if let Some((e, rows)) = rows {
        let rows: Vec<f32> = rows
            .chunks_exact(e)
            .flat_map(|row| {
                let length = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                row.iter().map(move |v| v / length).collect::<Vec<_>>()
            })
            .collect();
        write_npy(&classifier, &[1000, e], &rows)?;
    }
    let zero_shot = r.embedding().is_some();
    let vit = model::load(
        &path,
        &LoadOptions {
            // timm's files do not record it; Hugging Face's config does.
            heads: (r.kind != Kind::Siglip).then_some(r.heads),
            activation: (r.kind == Kind::Clip).then_some(model::FfnActivation::QuickGelu),
            classifier: zero_shot.then(|| classifier.clone()),
            // SigLIP's released scale and bias are about these (exp(4.7), -16.5).
            logit_scale: zero_shot.then_some(if r.kind == Kind::Siglip { 110.0 } else { 100.0 }),
            logit_bias: (r.kind == Kind::Siglip).then_some(-16.5),
            ..LoadOptions::default()
        },
    );
    std::fs::remove_dir_all(&dir).ok();
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
        Shape::ClipB32 | Shape::SiglipB16 => return None,
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
