//! Checkpoints the loaders must refuse (tensors of families not modelled, tensors
//! no model uses, a pickle naming code), and MAE through the whole command line.

mod common;
use common::{image_folder, neuronpath, scratch};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tiny timm fixture rewritten with `extra` tensors added.
fn timm_with(dir: &Path, name: &str, extra: &[(&str, Vec<usize>)]) -> PathBuf {
    let bytes = std::fs::read(common::shared("fixtures/tiny-vit-timm.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect();
    for (n, shape) in extra {
        let len: usize = shape.iter().product();
        tensors.insert(n.to_string(), (shape.clone(), vec![0u8; 4 * len]));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, (shape, data))| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (n.clone(), view)
        })
        .collect();
    let path = dir.join(name);
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

fn inspect(model: &Path) -> (bool, String) {
    let out = neuronpath()
        .args(["inspect", "--heads", "4", "--model"])
        .arg(model)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tensors_of_other_families_are_refused_by_name() {
    let dir = scratch("families");
    let (ok, err) = inspect(&timm_with(&dir, "plain.safetensors", &[]));
    assert!(ok, "the unmodified fixture must load: {err}");
    for (tensor, shape, family) in [
        ("norm_pre.weight", vec![32], "CLIP"),
        ("pre_logits.fc.weight", vec![32, 32], "pre-logits"),
        ("attn_pool.latent", vec![1, 1, 32], "SigLIP"),
    ] {
        let file = timm_with(&dir, "other.safetensors", &[(tensor, shape)]);
        let (ok, err) = inspect(&file);
        assert!(!ok, "{tensor}: accepted");
        assert!(
            err.contains(tensor) && err.contains(family) && err.contains("other.safetensors"),
            "{tensor}: {err}"
        );
    }
    for tensor in ["mystery.weight", "blocks.0.attn.q_norm.weight"] {
        let file = timm_with(&dir, "unknown.safetensors", &[(tensor, vec![8])]);
        let (ok, err) = inspect(&file);
        assert!(!ok && err.contains(tensor), "{err}");
    }
    let swin = dir.join("swin");
    std::fs::create_dir_all(&swin).unwrap();
    std::fs::write(
        swin.join("config.json"),
        r#"{"model_type": "swin", "architectures": ["SwinForImageClassification"]}"#,
    )
    .unwrap();
    std::fs::write(swin.join("model.safetensors"), b"").unwrap();
    let (ok, err) = inspect(&swin);
    assert!(
        !ok && err.contains("swin") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn a_pickle_naming_code_is_refused_and_not_run() {
    let dir = scratch("pickle");
    let marker = dir.join("ran");
    // GLOBAL os.system; MARK; a command; TUPLE; REDUCE; STOP.
    let mut pickle = b"\x80\x02cos\nsystem\n(X".to_vec();
    let command = format!("touch {}", marker.display());
    pickle.extend((command.len() as u32).to_le_bytes());
    pickle.extend(command.as_bytes());
    pickle.extend(b"tR.");
    let path = dir.join("evil.pth");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("evil/data.pkl", stored).unwrap();
    std::io::Write::write_all(&mut zip, &pickle).unwrap();
    zip.finish().unwrap();
    let (ok, err) = inspect(&path);
    assert!(
        !ok && err.contains("os.system") && err.contains("evil.pth"),
        "{err}"
    );
    assert!(!marker.exists(), "the pickle's command ran");
}

#[test]
fn mae_runs_through_paths_manipulate_stats_and_report() {
    let dir = scratch("mae-cli");
    let images = image_folder(&dir, &["cat", "ship"], 1);
    let model = common::shared("fixtures/mae-cifar10/mae-cifar10.pth");
    let paths = dir.join("paths.jsonl");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = neuronpath().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "paths".as_ref(),
        "--compat".as_ref(),
        "reference".as_ref(),
        "--method".as_ref(),
        "jas,activation".as_ref(),
        "--model".as_ref(),
        model.as_ref(),
        "--images".as_ref(),
        images.as_ref(),
        "--out".as_ref(),
        paths.as_ref(),
    ]);
    let text = std::fs::read_to_string(&paths).unwrap();
    assert_eq!(text.lines().count(), 4);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["compat"], "reference");
    assert_eq!(first["preprocess"], "reference");
    assert_eq!(first["sites"][5], "blocks.5.mlp.post@patches");
    let manipulated = dir.join("manipulate.jsonl");
    let stats = dir.join("stats.json");
    let common_args = [
        "--model".as_ref(),
        model.as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
    ];
    run(&[
        &[
            "manipulate".as_ref(),
            "--paths".as_ref(),
            paths.as_os_str(),
            "--out".as_ref(),
            manipulated.as_os_str(),
        ][..],
        &common_args[..],
    ]
    .concat());
    assert_eq!(
        std::fs::read_to_string(&manipulated)
            .unwrap()
            .lines()
            .count(),
        8
    );
    run(&[
        "stats".as_ref(),
        "--paths".as_ref(),
        paths.as_os_str(),
        "--out".as_ref(),
        stats.as_os_str(),
    ]);
    run(&[
        "report".as_ref(),
        "--paths".as_ref(),
        paths.as_os_str(),
        "--out".as_ref(),
        dir.join("r.html").as_os_str(),
    ]);
    // The plain ViT refuses paths of neurons at a token it has not.
    let dist = dir.join("dist.jsonl");
    std::fs::write(&dist, text.replace("@patches", "@dist")).unwrap();
    let out = neuronpath()
        .args(["manipulate", "--images"])
        .arg(&images)
        .arg("--paths")
        .arg(&dist)
        .arg("--out")
        .arg(dir.join("wrong.jsonl"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("dist.jsonl") && err.contains("dist token"),
        "{err}"
    );
}
