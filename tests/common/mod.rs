//! Paths to the shared ground truth (`../shared`, read-only).
#![allow(dead_code)]

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
use std::process::Command;

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

/// The complete lines (records) in `file` so far; none when it does not exist.
pub fn lines_written(file: &Path) -> usize {
    std::fs::read(file).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}
