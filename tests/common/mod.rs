//! Paths to the shared ground truth (`../shared`, read-only).
#![allow(dead_code)]

use std::path::PathBuf;

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
