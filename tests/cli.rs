//! The command line end to end: bad input, resuming a killed run, the experiments' inputs.

mod common;
use common::sorted_lines;
use common::{image_folder, neuronpath, scratch};
use std::process::Stdio;

#[test]
fn corrupt_images_are_skipped_and_counted() {
    let dir = scratch("corrupt");
    let images = image_folder(&dir, &["cat"], 2);
    let good = std::fs::read(images.join("cat/0000.jpg")).unwrap();
    std::fs::write(images.join("cat/truncated.jpg"), &good[..good.len() / 3]).unwrap();
    std::fs::write(images.join("cat/notes.png"), "not an image").unwrap();
    let out = neuronpath()
        .args(["paths", "--images"])
        .arg(&images)
        .arg("--out")
        .arg(dir.join("p.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("truncated.jpg") && stderr.contains("notes.png"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 images written") && stderr.contains("2 failed"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("p.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2 * 5,
        "two images, five methods"
    );
}

#[test]
fn unusable_inputs_fail_with_one_line_naming_the_problem() {
    let dir = scratch("unusable");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let out = neuronpath()
        .args(["paths", "--images"])
        .arg(dir.join("empty"))
        .arg("--out")
        .arg(dir.join("p.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("empty") && stderr.contains("no images"),
        "{stderr}"
    );

    // A checkpoint with one tensor missing.
    let ckpt = dir.join("broken");
    std::fs::create_dir_all(&ckpt).unwrap();
    let src = common::shared("fixtures/tiny-vit-hf");
    std::fs::copy(src.join("config.json"), ckpt.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "vit.encoder.layer.1.output.dense.weight")
        .collect();
    safetensors::serialize_to_file(kept, None, &ckpt.join("model.safetensors")).unwrap();
    let out = neuronpath()
        .args(["inspect", "--model"])
        .arg(&ckpt)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("missing tensor vit.encoder.layer.1.output.dense.weight")
            && stderr.contains("model.safetensors"),
        "{stderr}"
    );
}

#[test]
fn a_killed_run_resumes_to_the_same_file() {
    let dir = scratch("resume");
    let images = image_folder(&dir, &["airplane", "ship"], 4);
    // One uninterrupted run in the default batch (several images), against a killed
    // run resumed one image at a time: the records must be the same bits.
    let once = dir.join("once.jsonl");
    let status = neuronpath()
        .args(["paths", "--images"])
        .arg(&images)
        .arg("--out")
        .arg(&once)
        .status()
        .unwrap();
    assert!(status.success());

    let resumed = dir.join("resumed.jsonl");
    let mut child = neuronpath()
        .args(["paths", "--batch", "1", "--images"])
        .arg(&images)
        .arg("--out")
        .arg(&resumed)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some, but not all, records are out.
    loop {
        let lines = std::fs::read_to_string(&resumed)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = std::fs::read_to_string(&resumed).unwrap().lines().count();
    assert!(partial < 8 * 5, "the run finished before it was killed");
    // Simulate a torn write on top of the kill.
    let mut text = std::fs::read_to_string(&resumed).unwrap();
    text.push_str("{\"image\": \"ship/00");
    std::fs::write(&resumed, text).unwrap();
    let status = neuronpath()
        .args(["paths", "--batch", "1", "--images"])
        .arg(&images)
        .arg("--out")
        .arg(&resumed)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(sorted_lines(&once), sorted_lines(&resumed));
}

#[test]
fn manipulate_refuses_unusable_path_files() {
    let dir = scratch("manipulate");
    let images = image_folder(&dir, &["frog"], 1);
    let good = dir.join("good.jsonl");
    let status = neuronpath()
        .args([
            "paths",
            "--method",
            "activation",
            "--steps",
            "1",
            "--images",
        ])
        .arg(&images)
        .arg("--out")
        .arg(&good)
        .status()
        .unwrap();
    assert!(status.success());
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&good).unwrap().trim()).unwrap();
    let variant = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut r = record.clone();
        edit(&mut r);
        let file = dir.join(name);
        std::fs::write(&file, format!("{r}\n")).unwrap();
        file
    };
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let too_long = variant("long.jsonl", &|r| {
        r["path"].as_array_mut().unwrap().push(0.into())
    });
    let out_of_range = variant("range.jsonl", &|r| r["path"][2] = 512.into());
    for (file, want) in [
        (empty, "no records"),
        (too_long, "activation has 6 values for a path of 7 layers"),
        (out_of_range, "neuron 512 at layer 2 is out of range"),
    ] {
        let out = neuronpath()
            .args(["manipulate", "--images"])
            .arg(&images)
            .arg("--paths")
            .arg(&file)
            .arg("--out")
            .arg(dir.join("m.jsonl"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(want) && stderr.contains(file.to_str().unwrap()),
            "{}: {stderr}",
            file.display()
        );
    }
    // The good file works and writes one record per operation.
    let out = neuronpath()
        .args(["manipulate", "--images"])
        .arg(&images)
        .arg("--paths")
        .arg(&good)
        .arg("--out")
        .arg(dir.join("m.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sorted_lines(&dir.join("m.jsonl")).len(), 2);
}

#[test]
fn prune_evaluates_the_held_out_images_only() {
    let dir = common::scratch("prune");
    let images = common::image_folder(&dir, &["cat", "ship"], 4);
    let paths = dir.join("paths.jsonl");
    let status = common::neuronpath()
        .args(["paths", "--method", "jas", "--images"])
        .arg(&images)
        .arg("--out")
        .arg(&paths)
        .status()
        .unwrap();
    assert!(status.success());
    let prune = |fraction: &str, out: &str| -> serde_json::Value {
        let result = common::neuronpath()
            .args([
                "prune",
                "--top-k",
                "2",
                "--holdout",
                "0.5",
                "--fraction",
                fraction,
            ])
            .arg("--images")
            .arg(&images)
            .arg("--paths")
            .arg(&paths)
            .arg("--out")
            .arg(dir.join(out))
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        serde_json::from_str(&std::fs::read_to_string(dir.join(out)).unwrap()).unwrap()
    };
    // Pruning nothing changes nothing, whatever neurons are kept.
    let none = prune("0", "none.json");
    assert_eq!(
        none["build_paths"], 4,
        "images 0000-0001 of each class build"
    );
    assert_eq!(
        none["evaluated_images"], 4,
        "images 0002-0003 of each class evaluate"
    );
    let overall = &none["overall"];
    let prob = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap();
    let unpruned = prob(overall, "prob_unpruned");
    // Equal up to float rounding: the edited pass is batched differently.
    assert!((prob(overall, "prob_pruned") - unpruned).abs() < 1e-6);
    assert!((prob(overall, "prob_control") - unpruned).abs() < 1e-6);
    assert_eq!(overall["accuracy_pruned"], overall["accuracy_unpruned"]);
    // Pruning everything else changes the prediction.
    let all = prune("1", "all.json");
    assert_eq!(prob(&all["overall"], "prob_unpruned"), unpruned);
    assert!((prob(&all["overall"], "prob_pruned") - unpruned).abs() > 1e-3);
    assert_eq!(all["classes"].as_array().unwrap().len(), 2);

    std::fs::create_dir_all(dir.join("flat")).unwrap();
    std::fs::copy(images.join("cat/0000.jpg"), dir.join("flat/a.jpg")).unwrap();
    let out = common::neuronpath()
        .args(["prune", "--top-k", "2", "--images"])
        .arg(dir.join("flat"))
        .arg("--paths")
        .arg(&paths)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no labelled images"));
}

#[test]
fn search_settings_out_of_range_are_refused() {
    let dir = scratch("search-settings");
    let images = image_folder(&dir, &["cat"], 1);
    for (args, want) in [
        (vec!["--top-k", "0"], "--top-k 0: must be 1 to 512"),
        (vec!["--top-k", "513"], "--top-k 513: must be 1 to 512"),
        (vec!["--beam", "0"], "--beam 0: must be 1 to 256"),
        (vec!["--beam", "2", "--top-k", "2"], "use one or the other"),
        (
            vec!["--beam", "4", "--paths-per-image", "5"],
            "--paths-per-image 5: must be 1 to --beam (4)",
        ),
        (
            vec!["--top-k", "2", "--method", "influence"],
            "only jas and activation find top-K paths, not influence",
        ),
    ] {
        let out = neuronpath()
            .args(["paths", "--steps", "1", "--images"])
            .arg(&images)
            .arg("--out")
            .arg(dir.join("p.jsonl"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn top_k_and_beam_paths_go_through_the_experiments() {
    let dir = scratch("search-experiments");
    let images = image_folder(&dir, &["cat", "ship"], 1);
    let paths = |file: &str, args: &[&str]| {
        let out = neuronpath()
            .args(["paths", "--steps", "2", "--images"])
            .arg(&images)
            .arg("--out")
            .arg(dir.join(file))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join(file)
    };
    let top = paths("top.jsonl", &["--top-k", "3"]);
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&top)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4, "two images, jas and activation");
    for r in &records {
        let layers = r["path"].as_array().unwrap();
        assert_eq!(layers.len(), 6);
        assert!(
            layers.iter().all(|l| l.as_array().unwrap().len() == 3),
            "{r}"
        );
    }
    let beam = paths(
        "beam.jsonl",
        &["--method", "jas", "--beam", "3", "--paths-per-image", "2"],
    );
    let text = std::fs::read_to_string(&beam).unwrap();
    assert_eq!(text.lines().count(), 4, "two images, two paths each");
    assert!(text.contains("\"beam\":3") && text.contains("\"rank\":1"));
    for (file, want) in [(&top, 4 * 2), (&beam, 2 * 2)] {
        let out = dir.join("m.jsonl");
        let _ = std::fs::remove_file(&out);
        let status = neuronpath()
            .args(["manipulate", "--images"])
            .arg(&images)
            .arg("--paths")
            .arg(file)
            .arg("--out")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(sorted_lines(&out).len(), want, "{}", file.display());
        let status = neuronpath()
            .args(["stats", "--paths"])
            .arg(file)
            .arg("--out")
            .arg(dir.join("stats.json"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["methods"][0]["paths"], 2, "rank 0 only");
}
