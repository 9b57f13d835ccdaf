//! No checkpoint makes the loader panic: every layout (Hugging Face folder, timm
//! safetensors, Google npz, PyTorch pth) corrupted many ways — bytes of the header,
//! tensor shapes, dtypes and data offsets, npy headers and lengths, pickle bytes,
//! config values, truncations — each load an error naming the file, or a model.
//! Seeded, so every run tries the same corruptions.

mod common;
use neuronpath::model::{load, LoadOptions};
use neuronpath::numeric::SplitMix64;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;

/// Loads `path`; a panic fails the test naming the corruption, an error must name the file.
fn no_panic(path: &Path, what: &str) {
    let loaded = std::panic::catch_unwind(|| load(path, &LoadOptions::default()));
    let name = path.file_name().unwrap().to_string_lossy();
    match loaded {
        Err(_) => panic!("{what}: the loader panicked"),
        Ok(Err(e)) => assert!(format!("{e:#}").contains(&*name), "{what}: {e:#}"),
        Ok(Ok(_)) => {}
    }
}

/// A random edit of raw bytes: a flipped byte (in the first `head` bytes or anywhere),
/// a truncation, or a removed byte.
fn mutate_bytes(rng: &mut SplitMix64, bytes: &[u8], head: usize) -> (Vec<u8>, String) {
    let mut out = bytes.to_vec();
    let n = out.len().max(1);
    match rng.below(4) {
        0 => {
            let at = rng.below(head.min(n));
            out[at] ^= 1 << rng.below(8);
            (out, format!("header byte {at} flipped"))
        }
        1 => {
            let at = rng.below(n);
            out[at] = rng.below(256) as u8;
            (out, format!("byte {at} replaced"))
        }
        2 => {
            let len = rng.below(n);
            out.truncate(len);
            (out, format!("truncated to {len} bytes"))
        }
        _ => {
            let at = rng.below(n);
            out.remove(at);
            (out, format!("byte {at} removed"))
        }
    }
}

/// A weird value for a size or count.
fn weird_number(rng: &mut SplitMix64) -> Value {
    let values = [
        json!(0),
        json!(1),
        json!(3),
        json!(7),
        json!(1u64 << 20),
        json!(1u64 << 40),
        json!(u64::MAX),
        json!(-1),
        json!(2.5),
        json!("8"),
        Value::Null,
    ];
    values[rng.below(values.len())].clone()
}

/// A safetensors file with one tensor's shape, dtype or offsets changed, or its name.
fn mutate_safetensors(rng: &mut SplitMix64, bytes: &[u8]) -> (Vec<u8>, String) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let names: Vec<String> = header
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let name = names[rng.below(names.len())].clone();
    let entry = header.get_mut(&name).unwrap();
    let what = match rng.below(5) {
        0 => {
            let shape = entry["shape"].as_array_mut().unwrap();
            if shape.is_empty() || rng.below(3) == 0 {
                shape.push(weird_number(rng));
            } else {
                let i = rng.below(shape.len());
                shape[i] = weird_number(rng);
            }
            "a dimension"
        }
        1 => {
            let shape = entry["shape"].as_array_mut().unwrap();
            if rng.below(3) == 0 {
                shape.clear();
                "every dimension removed"
            } else {
                shape.pop();
                "a dimension removed"
            }
        }
        2 => {
            let dtypes = ["F64", "I64", "BOOL", "U8", "F16", "BF16", "X"];
            entry["dtype"] = json!(dtypes[rng.below(dtypes.len())]);
            "the dtype"
        }
        3 => {
            let i = rng.below(2);
            entry["data_offsets"][i] = weird_number(rng);
            "an offset"
        }
        _ => {
            let entry = header.remove(&name).unwrap();
            let other = [
                "blocks.99.attn.qkv.weight",
                "vit.encoder.layer.9.output.dense.bias",
                "x",
            ];
            header.insert(other[rng.below(other.len())].into(), entry);
            "the name"
        }
    };
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    (out, format!("{name}: {what} changed"))
}

/// A Hugging Face config with one value changed or removed.
fn mutate_config(rng: &mut SplitMix64, text: &str) -> (String, String) {
    let mut config: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    let keys = [
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "image_size",
        "patch_size",
        "num_channels",
        "layer_norm_eps",
        "id2label",
    ];
    let key = keys[rng.below(keys.len())];
    if rng.below(4) == 0 {
        config.remove(key);
        return (Value::Object(config).to_string(), format!("{key} removed"));
    }
    let value = weird_number(rng);
    let what = format!("{key} = {value}");
    config.insert(key.into(), value);
    (Value::Object(config).to_string(), what)
}

/// The entries of a zip archive, in order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (entry.name().unwrap().to_string(), data)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        zip.start_file(name.as_str(), stored).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// An archive with one entry's bytes mutated: its first `head` bytes (the npy
/// header, the pickle opcodes), or anywhere, or truncated.
fn mutate_entry(
    rng: &mut SplitMix64,
    entries: &[(String, Vec<u8>)],
    head: usize,
) -> (Vec<u8>, String) {
    let mut entries = entries.to_vec();
    let i = rng.below(entries.len());
    let (data, what) = mutate_bytes(rng, &entries[i].1, head);
    entries[i].1 = data;
    (rezip(&entries), format!("{}: {what}", entries[i].0))
}

/// Runs `rounds` mutations of `original` (one checkpoint file) through the loader.
fn run(
    dir: &Path,
    file: &str,
    rounds: usize,
    seed: u64,
    mutate: impl Fn(&mut SplitMix64) -> (Vec<u8>, String),
) {
    let mut rng = SplitMix64::new(seed);
    let path = dir.join(file);
    for round in 0..rounds {
        let (bytes, what) = mutate(&mut rng);
        std::fs::write(&path, bytes).unwrap();
        no_panic(&path, &format!("{file}, round {round}: {what}"));
    }
}

#[test]
fn timm_safetensors_corrupted_never_panic() {
    let dir = common::scratch("mutate-timm");
    let bytes = std::fs::read(common::shared("fixtures/tiny-vit-timm.safetensors")).unwrap();
    run(&dir, "timm.safetensors", 400, 1, |rng| {
        if rng.below(2) == 0 {
            mutate_safetensors(rng, &bytes)
        } else {
            mutate_bytes(rng, &bytes, 4096)
        }
    });
}

#[test]
fn hugging_face_folders_corrupted_never_panic() {
    let dir = common::scratch("mutate-hf");
    let src = common::shared("fixtures/tiny-vit-hf");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let config = std::fs::read_to_string(src.join("config.json")).unwrap();
    let mut rng = SplitMix64::new(2);
    for round in 0..400 {
        let (weights, config, what) = match rng.below(3) {
            0 => {
                let (c, what) = mutate_config(&mut rng, &config);
                (bytes.clone(), c, what)
            }
            1 => {
                let (w, what) = mutate_safetensors(&mut rng, &bytes);
                (w, config.clone(), what)
            }
            _ => {
                let (w, what) = mutate_bytes(&mut rng, &bytes, 4096);
                (w, config.clone(), what)
            }
        };
        std::fs::write(dir.join("model.safetensors"), weights).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
        let loaded = std::panic::catch_unwind(|| load(&dir, &LoadOptions::default()));
        match loaded {
            Err(_) => panic!("round {round}: {what}: the loader panicked"),
            Ok(Err(e)) => {
                let e = format!("{e:#}");
                assert!(
                    e.contains(&*dir.to_string_lossy()),
                    "round {round}: {what}: {e}"
                );
            }
            Ok(Ok(_)) => {}
        }
    }
}

#[test]
fn google_npz_corrupted_never_panic() {
    let dir = common::scratch("mutate-npz");
    let bytes = std::fs::read(common::shared("fixtures/tiny-vit-google.npz")).unwrap();
    let entries = unzip(&bytes);
    run(&dir, "google.npz", 400, 3, |rng| {
        if rng.below(4) == 0 {
            mutate_bytes(rng, &bytes, 512)
        } else {
            mutate_entry(rng, &entries, 128)
        }
    });
}

#[test]
fn pytorch_pth_corrupted_never_panic() {
    let dir = common::scratch("mutate-pth");
    let bytes = std::fs::read(common::shared("fixtures/mae-cifar10/mae-cifar10.pth")).unwrap();
    let entries = unzip(&bytes);
    // The pickle (data.pkl) holds the structure: most mutations go there.
    let pickle = entries
        .iter()
        .position(|(n, _)| n.ends_with("data.pkl"))
        .unwrap();
    run(&dir, "mae.pth", 150, 4, |rng| match rng.below(4) {
        0 => mutate_bytes(rng, &bytes, 512),
        1 => mutate_entry(rng, &entries, 64),
        _ => {
            let mut entries = entries.clone();
            let (data, what) = mutate_bytes(rng, &entries[pickle].1, usize::MAX);
            entries[pickle].1 = data;
            (rezip(&entries), format!("data.pkl: {what}"))
        }
    });
}

#[test]
fn a_config_declaring_other_layer_counts_is_refused() {
    let dir = common::scratch("layer-count");
    let src = common::shared("fixtures/tiny-vit-hf");
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let config = std::fs::read_to_string(src.join("config.json")).unwrap();
    for (layers, want) in [
        (2, "vit.encoder.layer.2.attention.attention.key.bias"),
        (4, "missing tensor vit.encoder.layer.3."),
        (0, "num_hidden_layers is 0: invalid"),
    ] {
        let edited = config.replace(
            "\"num_hidden_layers\": 3",
            &format!("\"num_hidden_layers\": {layers}"),
        );
        std::fs::write(dir.join("config.json"), edited).unwrap();
        let err = load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains(want),
            "{layers} layers: {err:#}"
        );
    }
}

/// `load` with `options`: a panic fails naming the corruption; an error must name
/// something under `dir` (the checkpoint, its config or its tokenizer).
fn no_panic_in(dir: &Path, model: &Path, options: &LoadOptions, what: &str) {
    let loaded = std::panic::catch_unwind(|| load(model, options));
    match loaded {
        Err(_) => panic!("{what}: the loader panicked"),
        Ok(Err(e)) => {
            let e = format!("{e:#}");
            assert!(e.contains(&*dir.to_string_lossy()), "{what}: {e}");
        }
        Ok(Ok(_)) => {}
    }
}

/// A JSON file with one value, at any depth, replaced by a weird one or removed.
fn mutate_json(rng: &mut SplitMix64, text: &str) -> (String, String) {
    let mut value: Value = serde_json::from_str(text).unwrap();
    let mut path = String::new();
    let mut at = &mut value;
    loop {
        let keys: Vec<String> = match at.as_object() {
            Some(m) if !m.is_empty() => m.keys().cloned().collect(),
            _ => break,
        };
        let key = keys[rng.below(keys.len())].clone();
        path.push_str(&format!("/{key}"));
        if rng.below(3) == 0 || !at[&key].is_object() {
            if rng.below(4) == 0 {
                at.as_object_mut().unwrap().remove(&key);
                return (value.to_string(), format!("{path} removed"));
            }
            let weird = weird_number(rng);
            let what = format!("{path} = {weird}");
            at[&key] = weird;
            return (value.to_string(), what);
        }
        at = &mut at[&key];
    }
    (value.to_string(), "unchanged".into())
}

/// Copies `files` of a fixture into `dir`, then `rounds` times corrupts one of
/// them (safetensors shapes and bytes, JSON values, raw bytes) and loads.
fn corrupt_fixture(name: &str, files: &[&str], model: &str, options: &LoadOptions, seed: u64) {
    let dir = common::scratch(&format!("mutate-{name}"));
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(common::fixture(&format!("{name}/{f}"))).unwrap())
        .collect();
    let mut rng = SplitMix64::new(seed);
    for round in 0..150 {
        for (f, bytes) in files.iter().zip(&originals) {
            std::fs::write(dir.join(f), bytes).unwrap();
        }
        let i = rng.below(files.len());
        let (bytes, what) = match (files[i].rsplit('.').next(), rng.below(3)) {
            (Some("safetensors"), 0 | 1) => mutate_safetensors(&mut rng, &originals[i]),
            (Some("json"), 0 | 1) => {
                let (text, what) =
                    mutate_json(&mut rng, std::str::from_utf8(&originals[i]).unwrap());
                (text.into_bytes(), what)
            }
            _ => mutate_bytes(&mut rng, &originals[i], 4096),
        };
        std::fs::write(dir.join(files[i]), bytes).unwrap();
        let what = format!("{name} round {round}: {}: {what}", files[i]);
        no_panic_in(&dir, &dir.join(model), options, &what);
    }
}

fn classes() -> Option<Vec<String>> {
    Some(
        common::FIXTURE_CLASSES
            .iter()
            .map(|c| c.to_string())
            .collect(),
    )
}

#[test]
fn clip_model_folders_corrupted_never_panic() {
    let options = LoadOptions {
        classes: classes(),
        ..LoadOptions::default()
    };
    let files = ["config.json", "model.safetensors", "tokenizer.json"];
    corrupt_fixture("clip-hf", &files, "", &options, 5);
}

#[test]
fn open_clip_files_corrupted_never_panic() {
    let options = LoadOptions {
        classes: classes(),
        tokenizer: None,
        ..LoadOptions::default()
    };
    let files = [
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "vocab.txt.gz",
    ];
    let with_vocab = |dir: &str| LoadOptions {
        tokenizer: Some(std::env::temp_dir().join(dir)),
        ..options.clone()
    };
    let dir = format!(
        "neuronpath-mutate-open-clip-{}/vocab.txt.gz",
        std::process::id()
    );
    corrupt_fixture(
        "open-clip",
        &files,
        "open_clip_model.safetensors",
        &with_vocab(&dir),
        6,
    );
}

#[test]
fn dinov2_resized_folders_corrupted_never_panic() {
    let files = [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ];
    corrupt_fixture(
        "dinov2-registers-resized",
        &files,
        "",
        &LoadOptions::default(),
        7,
    );
}
