//! Paths to the shared ground truth (`../shared`, read-only).
#![allow(dead_code)]

pub mod executors;

use std::path::{Path, PathBuf};

/// CIFAR-10's classes, in the order of its labels (and of the bundled model's).
pub const CIFAR10: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
use std::process::{Command, Output};

pub fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

pub fn npz(rel: &str) -> std::collections::HashMap<String, neuronpath::model::npy::Array> {
    neuronpath::model::npy::read_npz(&shared(rel))
        .unwrap()
        .into_iter()
        .collect()
}

/// The neuron indices of a JSON array.
pub fn indices(value: &serde_json::Value) -> Vec<usize> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

/// Records of a reference file in `../shared/reference`.
pub fn reference_records(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(shared(&format!("reference/{name}"))).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["records"].as_array().unwrap().clone()
}

/// Clean passes of reference records (`image`, `label`) from the CIFAR-10 test images.
pub fn contexts(
    vit: &neuronpath::model::Vit,
    records: &[serde_json::Value],
) -> Vec<neuronpath::attribution::ImageContext> {
    let norm = neuronpath::data::normalization(vit, neuronpath::data::Preset::Reference);
    records
        .iter()
        .map(|r| {
            let path = shared(&format!(
                "data/cifar10-test/{}",
                r["image"].as_str().unwrap()
            ));
            let pixels = neuronpath::data::load_image(&path, vit, &norm).unwrap();
            neuronpath::attribution::ImageContext::new(
                vit,
                r["image"].as_str().unwrap().to_string(),
                pixels,
                r["label"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

/// The built command-line binary.
pub fn neuronpath() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neuronpath"))
}

/// A fresh, empty folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neuronpath-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An ImageFolder of real CIFAR-10 test images: the first `per_class` of each of `classes`.
pub fn image_folder(dir: &Path, classes: &[&str], per_class: usize) -> PathBuf {
    let root = dir.join("images");
    for class in classes {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per_class {
            let name = format!("{i:04}.jpg");
            std::fs::copy(
                shared(&format!("data/cifar10-test/{class}/{name}")),
                root.join(class).join(name),
            )
            .unwrap();
        }
    }
    root
}

/// The lines of a text file, sorted (files whose line order may differ).
pub fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// The classes of the zero-shot fixtures' references (tests/fixtures/families).
pub const FIXTURE_CLASSES: [&str; 5] = [
    "tench",
    "goldfish",
    "great white shark",
    "jack-o'-lantern",
    "potter's wheel",
];

/// A family fixture: a checkpoint saved by its own library, the options it loads
/// with, and its PyTorch reference.
pub struct Fixture {
    pub name: &'static str,
    pub model: PathBuf,
    pub options: neuronpath::model::LoadOptions,
    pub reference: PathBuf,
}

impl Fixture {
    pub fn load(&self) -> neuronpath::model::Vit {
        neuronpath::model::load(&self.model, &self.options)
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name))
    }

    /// The command-line flags that load it as `options` says.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        use neuronpath::model::FfnActivation;
        let o = &self.options;
        let mut args: Vec<std::ffi::OsString> = vec!["--model".into(), self.model.clone().into()];
        let mut flag = |name: &str, value: std::ffi::OsString| {
            args.push(name.into());
            args.push(value);
        };
        if let Some(c) = &o.classifier {
            flag("--classifier", c.into());
        }
        if let Some(c) = &o.classes {
            flag("--classes", c.join(",").into());
        }
        if let Some(t) = &o.tokenizer {
            flag("--tokenizer", t.into());
        }
        if let Some(a) = o.activation {
            let name = if a == FfnActivation::QuickGelu {
                "quick-gelu"
            } else {
                "gelu"
            };
            flag("--activation", name.into());
        }
        if let Some(h) = &o.head {
            let mut value = h.weight.clone().into_os_string();
            if let Some(b) = &h.bias {
                value.push(",");
                value.push(b);
            }
            flag("--head", value);
        }
        args
    }

    pub fn reference(&self) -> std::collections::HashMap<String, neuronpath::model::npy::Array> {
        neuronpath::model::npy::read_npz(&self.reference)
            .unwrap()
            .into_iter()
            .collect()
    }
}

/// This repository's fixtures (`tests/fixtures/families`).
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/families")
        .join(rel)
}

/// Every family fixture: the shared ones (DeiT, the CLIP vision tower, DINOv2) and
/// this repository's (Hugging Face CLIPModel, open_clip in both files, timm's CLIP
/// towers, DINOv2 run at another size than it was trained at, backbones with probes,
/// SigLIP's vision tower, and SiglipModel with class rows from its text tower and
/// with a classifier).
pub fn family_fixtures() -> Vec<Fixture> {
    use neuronpath::model::{FfnActivation, LoadOptions, Probe};
    let classes = Some(FIXTURE_CLASSES.iter().map(|c| c.to_string()).collect());
    let mut out: Vec<Fixture> = [
        "deit-distilled",
        "clip-vision",
        "dinov2-registers",
        "dinov2-registers-swiglu",
    ]
    .into_iter()
    .map(|name| {
        let dir = shared(&format!("fixtures/families/{name}"));
        Fixture {
            name,
            options: LoadOptions {
                classifier: (name == "clip-vision").then(|| dir.join("text.npy")),
                ..LoadOptions::default()
            },
            reference: dir.join("reference.npz"),
            model: dir,
        }
    })
    .collect();
    let own = |name: &'static str, model: &str, options: LoadOptions| Fixture {
        name,
        model: fixture(model),
        options,
        reference: fixture(&format!(
            "{}/reference.npz",
            model.split('/').next().unwrap()
        )),
    };
    let probe = |dir: &str| {
        Some(Probe {
            weight: fixture(&format!("{dir}/head.npy")),
            bias: Some(fixture(&format!("{dir}/bias.npy"))),
        })
    };
    let open_clip = LoadOptions {
        classes: classes.clone(),
        tokenizer: Some(fixture("open-clip/vocab.txt.gz")),
        ..LoadOptions::default()
    };
    out.extend([
        own(
            "clip-hf",
            "clip-hf",
            LoadOptions {
                classes: classes.clone(),
                ..LoadOptions::default()
            },
        ),
        own(
            "open-clip safetensors",
            "open-clip/open_clip_model.safetensors",
            open_clip.clone(),
        ),
        own(
            "open-clip bin",
            "open-clip/open_clip_pytorch_model.bin",
            open_clip,
        ),
        own(
            "timm-clip-quickgelu",
            "timm-clip-quickgelu",
            LoadOptions {
                classifier: Some(fixture("timm-clip-quickgelu/text.npy")),
                ..LoadOptions::default()
            },
        ),
        own(
            "timm-clip",
            "timm-clip/model.safetensors",
            LoadOptions {
                activation: Some(FfnActivation::GeluErf),
                ..LoadOptions::default()
            },
        ),
        own("dinov2-resized", "dinov2-resized", LoadOptions::default()),
        own(
            "dinov2-registers-resized",
            "dinov2-registers-resized",
            LoadOptions::default(),
        ),
        own(
            "dinov2-backbone",
            "dinov2-backbone",
            LoadOptions {
                head: probe("dinov2-backbone"),
                ..LoadOptions::default()
            },
        ),
        own(
            "timm-dinov2-backbone",
            "timm-dinov2-backbone",
            LoadOptions {
                head: probe("timm-dinov2-backbone"),
                ..LoadOptions::default()
            },
        ),
        own(
            "siglip-vision",
            "siglip-vision",
            LoadOptions {
                classifier: Some(fixture("siglip-vision/text.npy")),
                ..LoadOptions::default()
            },
        ),
        own(
            "siglip",
            "siglip",
            LoadOptions {
                classes: classes.clone(),
                ..LoadOptions::default()
            },
        ),
        own(
            "siglip classifier",
            "siglip",
            LoadOptions {
                classifier: Some(fixture("siglip-vision/text.npy")),
                ..LoadOptions::default()
            },
        ),
    ]);
    out
}

/// `|got - want| <= tol` everywhere, naming the first place it fails.
pub fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: {g} vs {w} (tolerance {tol:e})"
        );
    }
}

pub fn max_abs(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// The complete lines (records) in `file` so far; none when it does not exist.
pub fn lines_written(file: &Path) -> usize {
    std::fs::read(file).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// `neuronpath paths` (one cheap method, one step unless `extra` says) on `images`
/// into `out`, with `extra` flags.
pub fn paths(images: &Path, out: &Path, extra: &[&str]) -> Output {
    let steps: &[&str] = if extra.contains(&"--steps") {
        &[]
    } else {
        &["--steps", "1"]
    };
    neuronpath()
        .args(["paths", "--method", "activation"])
        .args(steps)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

pub fn manipulate(images: &Path, paths: &Path, out: &Path, extra: &[&str]) -> Output {
    neuronpath()
        .args(["manipulate", "--images"])
        .arg(images)
        .arg("--paths")
        .arg(paths)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Asserts that the command failed with a message holding every one of `want`.
pub fn fails_with(out: &Output, want: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {stderr}");
    for w in want {
        assert!(stderr.contains(w), "wanted {w:?} in: {stderr}");
    }
}

pub fn succeeds(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

pub fn records(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A copy of the bundled model with one head bias changed: same shape, other answers.
pub fn other_model(dir: &Path) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/vit-cifar10");
    let to = dir.join("other-model");
    std::fs::create_dir_all(&to).unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(src.join(f), to.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut bias: Vec<u8> = st.tensor("classifier.bias").unwrap().data().to_vec();
    bias[..4].copy_from_slice(&5f32.to_le_bytes());
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| match name.as_str() {
            "classifier.bias" => {
                let view = safetensors::tensor::TensorView::new(
                    view.dtype(),
                    view.shape().to_vec(),
                    &bias,
                )
                .unwrap();
                (name, view)
            }
            _ => (name, view),
        })
        .collect();
    safetensors::serialize_to_file(tensors, None, &to.join("model.safetensors")).unwrap();
    to
}

/// A slow `paths` run on `images` into `out` (jas, one image a batch), returned
/// once it holds the file and has written a record.
pub fn writing(images: &Path, out: &Path) -> std::process::Child {
    let child = neuronpath()
        .args(["paths", "--method", "jas", "--batch", "1", "--images"])
        .arg(images)
        .arg("--out")
        .arg(out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::fs::read_to_string(out).map_or(0, |t| t.lines().count()) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
}
