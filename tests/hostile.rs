//! Hostile inputs, second round (issue 25): one case per defect and per unclear
//! error. Each asserts that the run stops (or skips) with a message naming the
//! file, the field or tensor and the value, and that no file the user did not ask
//! to change was changed.

mod common;
use common::{
    fails_with, image_folder, neuronpath, other_model, paths, records, scratch, succeeds,
};
use neuronpath::model::{load, LoadOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A scratch folder `name` with an image folder of `classes` and the paths
/// found there (`p.jsonl`, the cheap method).
fn found(name: &str, classes: &[&str], per_class: usize) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    let images = image_folder(&dir, classes, per_class);
    let p = dir.join("p.jsonl");
    succeeds(&paths(&images, &p, &[]));
    (dir, images, p)
}

/// `neuronpath stats` of `paths` into `out`.
fn stats(paths: &Path, out: impl AsRef<Path>) -> Output {
    let mut c = neuronpath();
    c.args(["stats", "--paths"])
        .arg(paths)
        .arg("--out")
        .arg(out.as_ref());
    c.output().unwrap()
}

fn bundled() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/vit-cifar10")
}

/// A copy of the bundled model in `dir/name`, its `preprocessor_config.json` (or
/// another file) replaced by `files`.
fn model_copy(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for f in [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(bundled().join(f), to.join(f)).unwrap();
    }
    for (file, text) in files {
        std::fs::write(to.join(file), text).unwrap();
    }
    to
}

/// The bundled model's preprocessor config with `edit` applied.
fn preprocessor(edit: impl Fn(&mut serde_json::Value)) -> String {
    let text = std::fs::read_to_string(bundled().join("preprocessor_config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut json);
    json.to_string()
}

/// Runs `command`, failing the test when it runs past `secs` (it hung).
fn within(mut command: Command, secs: u64) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            panic!("{command:?} hung past {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
}

/// The files below `dir` with their bytes (what a run may not have changed).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            files.extend(snapshot(&path));
        } else if meta.is_file() {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

fn load_error(path: &Path) -> String {
    format!("{:#}", load(path, &LoadOptions::default()).unwrap_err())
}

// ---- Defects -------------------------------------------------------------

#[test]
fn d1_preprocessor_sizes_get_the_limits_of_image_headers() {
    let dir = scratch("h-d1");
    for (size, want) in [
        (
            serde_json::json!({"height": 100000, "width": 100000}),
            "size is 100000x100000: invalid, over the limit",
        ),
        (
            serde_json::json!({"shortest_edge": 1u64 << 62}),
            "size.shortest_edge is 4611686018427387904x4611686018427387904: invalid",
        ),
    ] {
        let text = preprocessor(|j| {
            j["do_center_crop"] = true.into();
            j["size"] = size.clone();
        });
        let model = model_copy(&dir, "m", &[("preprocessor_config.json", &text)]);
        let err = load_error(&model);
        assert!(
            err.contains("preprocessor_config.json") && err.contains(want),
            "{err}"
        );
    }
}

#[test]
fn d2_an_image_file_over_the_limit_is_skipped_unread_and_counted() {
    let dir = scratch("h-d2");
    let images = image_folder(&dir, &["cat"], 1);
    let huge = images.join("cat/huge.jpg");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let run = paths(&images, &dir.join("p.jsonl"), &[]);
    let stderr = succeeds(&run);
    assert!(
        stderr.contains("huge.jpg")
            && stderr.contains("over the limit of 256 MiB for an image file"),
        "{stderr}"
    );
    assert!(stderr.contains("1 failed"), "{stderr}");
    assert_eq!(records(&dir.join("p.jsonl")).len(), 1);
}

#[test]
fn d3_a_json_or_text_input_is_read_with_a_bound() {
    let dir = scratch("h-d3");
    let model = model_copy(&dir, "m", &[]);
    std::fs::remove_file(model.join("config.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", model.join("config.json")).unwrap();
    let run = within(
        {
            let mut c = neuronpath();
            c.args(["inspect", "--model"]).arg(&model);
            c
        },
        60,
    );
    fails_with(
        &run,
        &["config.json: a device, where a regular file is expected"],
    );
    // A regular file, but too large for what it is.
    let model = model_copy(&dir, "m2", &[]);
    let config = std::fs::OpenOptions::new()
        .append(true)
        .open(model.join("preprocessor_config.json"))
        .unwrap();
    config.set_len(300 << 20).unwrap();
    let err = load_error(&model);
    assert!(
        err.contains("preprocessor_config.json") && err.contains("over the limit of 256 MiB"),
        "{err}"
    );
    // A label map too.
    let images = image_folder(&dir, &["cat"], 1);
    std::os::unix::fs::symlink("/dev/zero", dir.join("map.json")).unwrap();
    let map = dir.join("map.json");
    let run = paths(
        &images,
        &dir.join("p.jsonl"),
        &["--label-map", map.to_str().unwrap()],
    );
    fails_with(&run, &["map.json: a device"]);
}

/// `command` run with writes past `limit` bytes failing (as on a full disk).
fn with_file_limit(mut command: Command, limit: u64) -> Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().unwrap()
}

#[test]
fn d4_outputs_are_written_whole_or_left_as_they_were() {
    let (dir, images, p) = found("h-d4", &["cat", "dog"], 2);
    let report = dir.join("report.html");
    let stats = dir.join("stats.json");
    let report_args = |c: &mut Command| {
        c.args(["report", "--paths"])
            .arg(&p)
            .arg("--images")
            .arg(&images)
            .arg("--out")
            .arg(&report);
    };
    let stats_args = |c: &mut Command| {
        c.args(["stats", "--paths"])
            .arg(&p)
            .arg("--out")
            .arg(&stats);
    };
    for args in [&report_args as &dyn Fn(&mut Command), &stats_args] {
        let mut c = neuronpath();
        args(&mut c);
        succeeds(&c.output().unwrap());
    }
    let before = snapshot(&dir);
    for args in [&report_args as &dyn Fn(&mut Command), &stats_args] {
        let mut c = neuronpath();
        args(&mut c);
        let run = with_file_limit(c, 256);
        fails_with(&run, &["cannot write (left as it was)"]);
        assert_eq!(
            snapshot(&dir),
            before,
            "a file changed, or a temporary one was left"
        );
    }
    // neurons: the scan's state fails to save; nothing is left behind.
    let mut c = neuronpath();
    c.args(["neurons", "--neurons", "0:1", "--images"])
        .arg(&images)
        .arg("--out")
        .arg(dir.join("n.jsonl"));
    let run = with_file_limit(c, 256);
    fails_with(&run, &["n.jsonl.scan: cannot write (left as it was)"]);
    let left: Vec<_> = snapshot(&dir)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn d5_top_k_is_a_setting_a_resumed_file_must_match() {
    let (_, images, p) = found("h-d5", &["cat"], 1);
    let before = std::fs::read(&p).unwrap();
    fails_with(
        &paths(&images, &p, &["--top-k", "2"]),
        &[
            "p.jsonl: line 1",
            "made with top-k 1, but this run has top-k 2",
        ],
    );
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

#[test]
fn d6_duplicate_methods_and_records_are_refused() {
    let dir = scratch("h-d6");
    let images = image_folder(&dir, &["cat"], 2);
    let p = dir.join("p.jsonl");
    let out = paths(&images, &p, &["--method", "activation,jas,activation"]);
    fails_with(&out, &["--method: activation is given twice"]);
    assert!(!p.exists());
    succeeds(&paths(&images, &p, &[]));
    let text = std::fs::read_to_string(&p).unwrap();
    let first = text.lines().next().unwrap();
    std::fs::write(&p, format!("{text}{first}\n")).unwrap();
    let image = records(&p)[0]["image"].as_str().unwrap().to_string();
    let want = format!("a second path record of \"{image} activation\" (the first is on line 1)");
    let out = dir.join("stats.json");
    fails_with(&stats(&p, &out), &["p.jsonl: line 3", &want]);
    assert!(!out.exists());
    let m = dir.join("m.jsonl");
    fails_with(
        &common::manipulate(&images, &p, &m, &[]),
        &["p.jsonl: line 3", &want],
    );
    assert!(!m.exists());
}

#[test]
fn d7_report_refuses_inputs_of_another_model_or_changed_images() {
    let dir = scratch("h-d7");
    let images = image_folder(&dir, &["cat"], 2);
    let (p, q) = (dir.join("p.jsonl"), dir.join("q.jsonl"));
    succeeds(&paths(&images, &p, &[]));
    let other = other_model(&dir);
    succeeds(&paths(&images, &q, &["--model", other.to_str().unwrap()]));
    let (m, s, n) = (dir.join("m.jsonl"), dir.join("s.json"), dir.join("n.jsonl"));
    let model = ["--model", other.to_str().unwrap()];
    succeeds(&common::manipulate(&images, &q, &m, &model));
    succeeds(&stats(&q, &s));
    let neurons = neuronpath()
        .args(["neurons", "--top", "1", "--paths"])
        .arg(&q)
        .args(model)
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&n)
        .output()
        .unwrap();
    succeeds(&neurons);
    let html = dir.join("r.html");
    let report = |flag: &str, file: &Path, from: &Path| {
        neuronpath()
            .args(["report", "--paths"])
            .arg(from)
            .arg("--images")
            .arg(&images)
            .arg(flag)
            .arg(file)
            .arg("--out")
            .arg(&html)
            .output()
            .unwrap()
    };
    for (flag, file, want) in [
        ("--manipulate", &m, "m.jsonl: the remove record of"),
        ("--stats", &s, "s.json was made with another model"),
        ("--neurons", &n, "n.jsonl: neuron"),
    ] {
        let _ = std::fs::remove_file(&html);
        fails_with(&report(flag, file, &p), &[want, "another model", "p.jsonl"]);
        assert!(!html.exists());
        succeeds(&report(flag, file, &q));
    }
    // An image whose bytes changed since the paths.
    let image = images.join("cat/0001.jpg");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes.push(0);
    std::fs::write(&image, bytes).unwrap();
    std::fs::remove_file(&html).unwrap();
    fails_with(
        &report("--stats", &s, &q),
        &["cat/0001.jpg: not the image the paths in", "q.jsonl"],
    );
    assert!(!html.exists());
}

#[test]
fn d8_special_files_where_files_are_expected_do_not_hang() {
    let dir = scratch("h-d8");
    let runs = dir.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    mkfifo(&runs.join("p.jsonl.shard.json"));
    let mut status = neuronpath();
    status.arg("status").arg(&runs);
    fails_with(&within(status, 60), &["p.jsonl.shard.json: a FIFO"]);
    let mut merge = neuronpath();
    merge
        .args(["merge", "--out"])
        .arg(dir.join("all.jsonl"))
        .arg(runs.join("p.jsonl"));
    fails_with(&within(merge, 60), &["p.jsonl.shard.json: a FIFO"]);
    let images = image_folder(&dir, &["cat"], 1);
    let mut shard = neuronpath();
    shard
        .args([
            "paths",
            "--method",
            "activation",
            "--steps",
            "1",
            "--shard",
            "0/2",
            "--images",
        ])
        .arg(&images)
        .arg("--out")
        .arg(runs.join("p.jsonl"));
    fails_with(&within(shard, 60), &["p.jsonl.shard.json: a FIFO"]);
    // A records file that is a FIFO.
    let fifo = dir.join("fifo.jsonl");
    mkfifo(&fifo);
    let mut c = neuronpath();
    c.args(["stats", "--paths"])
        .arg(&fifo)
        .arg("--out")
        .arg(dir.join("s.json"));
    fails_with(
        &within(c, 60),
        &["fifo.jsonl: a FIFO, where a regular file is expected"],
    );
}

#[test]
fn d9_a_resumed_image_whose_bytes_changed_is_refused() {
    let (_, images, p) = found("h-d9", &["cat"], 2);
    let before = std::fs::read(&p).unwrap();
    let image = images.join("cat/0000.jpg");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes.push(0);
    std::fs::write(&image, bytes).unwrap();
    fails_with(
        &paths(&images, &p, &[]),
        &[
            "p.jsonl: the paths of cat/0000.jpg there were found on another image",
            "0000.jpg changed since",
            "refused",
        ],
    );
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

/// The paths file `p` with the record on `line` (from 0) edited by `edit`.
fn edited(p: &Path, to: &Path, line: usize, edit: impl Fn(&mut serde_json::Value)) {
    let mut lines: Vec<serde_json::Value> = records(p);
    edit(&mut lines[line]);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(to, text).unwrap();
}

#[test]
fn d10_hand_edited_path_records_are_checked_by_every_reader() {
    let (dir, images, p) = found("h-d10", &["cat", "dog"], 2);
    let bad = dir.join("bad.jsonl");
    let cat0 = "cat/0000.jpg (activation)";
    // Each reader of a paths file, on `file`.
    let run = |command: &[&str], file: &Path, out: &str, images_too: bool| {
        let mut c = neuronpath();
        c.args(command).arg("--paths").arg(file);
        if images_too {
            c.arg("--images").arg(&images);
        }
        c.arg("--out").arg(dir.join(out)).output().unwrap()
    };
    let stats = |file: &Path| run(&["stats"], file, "s.json", false);
    let report = |file: &Path| run(&["report"], file, "r.html", true);
    let prune = |file: &Path| {
        let command = ["prune", "--method", "activation", "--top-k", "1"];
        run(&command, file, "prune.json", true)
    };
    let neurons = |file: &Path| run(&["neurons"], file, "n.jsonl", true);
    // A 5-layer path and an empty one on a 6-layer model.
    edited(&p, &bad, 0, |r| {
        r["path"].as_array_mut().unwrap().pop();
    });
    fails_with(
        &neurons(&bad),
        &[
            "bad.jsonl: line 1",
            cat0,
            "activation has 6 values for a path of 5 layers",
        ],
    );
    edited(&p, &bad, 0, |r| r["path"] = serde_json::json!([]));
    fails_with(
        &neurons(&bad),
        &["bad.jsonl: line 1", cat0, "the path is empty"],
    );
    // Label and target 99.
    edited(&p, &bad, 0, |r| {
        r["label"] = 99.into();
        r["target"] = 99.into();
    });
    for run in [stats(&bad), report(&bad), prune(&bad)] {
        fails_with(
            &run,
            &[
                "bad.jsonl: line 1",
                cat0,
                "label is 99: out of range, the model has 10 classes",
            ],
        );
    }
    // A ragged top-K path.
    edited(&p, &bad, 0, |r| {
        let path = r["path"].as_array().unwrap().clone();
        let mut ragged: Vec<serde_json::Value> =
            path.iter().map(|n| serde_json::json!([n])).collect();
        ragged[0] = serde_json::json!([path[0], (path[0].as_u64().unwrap() + 1) % 128]);
        r["path"] = ragged.into();
    });
    for run in [stats(&bad), report(&bad), prune(&bad), neurons(&bad)] {
        fails_with(
            &run,
            &[
                "bad.jsonl: line 1",
                cat0,
                "2 neuron(s) at layer 0 but 1 at layer 1 (a ragged path",
            ],
        );
    }
    // Records of two models in one file.
    let q = dir.join("q.jsonl");
    let other = other_model(&dir);
    let dog = image_folder(&dir.join("dog"), &["dog"], 1);
    succeeds(&paths(&dog, &q, &["--model", other.to_str().unwrap()]));
    let both = [std::fs::read(&p).unwrap(), std::fs::read(&q).unwrap()].concat();
    std::fs::write(&bad, both).unwrap();
    for run in [stats(&bad), report(&bad)] {
        fails_with(
            &run,
            &[
                "bad.jsonl: line 5",
                "made with model fingerprint",
                "but the record on line 1",
                "mixes",
            ],
        );
    }
    assert!(!dir.join("s.json").exists() && !dir.join("r.html").exists());
    assert!(!dir.join("prune.json").exists() && !dir.join("n.jsonl").exists());
}

// ---- Unclear errors ------------------------------------------------------

/// The bytes of a safetensors file with `edit` applied to its header.
fn edit_safetensors(
    bytes: &[u8],
    edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    out
}

#[test]
fn u1_bad_safetensors_offsets_and_a_missing_npz_array_are_named() {
    let dir = scratch("h-u1");
    let bytes = std::fs::read(common::shared("fixtures/tiny-vit-timm.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // The tensor that starts the data: its end moved into the next tensor.
    let mut names: Vec<(String, usize)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().as_ptr() as usize))
        .collect();
    names.sort_by_key(|(_, at)| *at);
    let first = names[0].0.clone();
    let edited = edit_safetensors(&bytes, |h| {
        let end = h[&first]["data_offsets"][1].as_u64().unwrap();
        h.get_mut(&first).unwrap()["data_offsets"][1] = (end + 4).into();
    });
    let file = dir.join("bad.safetensors");
    std::fs::write(&file, edited).unwrap();
    let err = load_error(&file);
    assert!(
        err.contains("bad.safetensors")
            && err.contains(&format!("tensor {first} has data_offsets")),
        "{err}"
    );
    // An npz without one array: that array is named, not the ones present.
    let src = common::shared("fixtures/tiny-vit-google.npz");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&src).unwrap()).unwrap();
    let npz = dir.join("missing.npz");
    let mut out = zip::ZipWriter::new(std::fs::File::create(&npz).unwrap());
    let gone = "Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel";
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        if name.trim_end_matches(".npy") == gone {
            continue;
        }

        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut out, &data).unwrap();
    }
    out.finish().unwrap();
    let err = load_error(&npz);
    assert!(
        err.contains(&format!("missing.npz: missing tensor {gone}")),
        "{err}"
    );
}

/// The tiny Hugging Face fixture with `edit` applied to its config.json.
fn tiny_hf(dir: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = common::shared("fixtures/tiny-vit-hf");
    let to = dir.join("tiny");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(src.join("model.safetensors"), to.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(to.join("config.json"), config.to_string()).unwrap();
    to
}

#[test]
fn u2_invalid_config_values_are_called_invalid_not_missing() {
    let dir = scratch("h-u2");
    for (key, value, want) in [
        (
            "num_attention_heads",
            serde_json::json!(-4),
            "num_attention_heads is -4: invalid",
        ),
        (
            "hidden_size",
            serde_json::json!(128.5),
            "hidden_size is 128.5: invalid",
        ),
        (
            "hidden_size",
            serde_json::json!("128"),
            "hidden_size is \"128\": invalid",
        ),
    ] {
        let model = tiny_hf(&dir, |c| c[key] = value.clone());
        let err = load_error(&model);
        assert!(err.contains("config.json: ") && err.contains(want), "{err}");
    }
    let run = neuronpath()
        .args(["neurons", "--neurons", "0:-1"])
        .output()
        .unwrap();
    fails_with(&run, &["\"0:-1\": the neuron \"-1\" is invalid"]);
}

#[test]
fn u3_an_unknown_activation_is_refused() {
    let dir = scratch("h-u3");
    for (value, want) in [
        (serde_json::json!(5), "hidden_act is 5: invalid"),
        (
            serde_json::json!("swish"),
            "hidden_act is \"swish\": not supported",
        ),
    ] {
        let err = load_error(&tiny_hf(&dir, |c| c["hidden_act"] = value.clone()));
        assert!(err.contains("config.json: ") && err.contains(want), "{err}");
    }
}

#[test]
fn u4_values_that_would_make_every_image_nan_are_refused_at_load() {
    let dir = scratch("h-u4");
    for eps in [0.0, -1e-6, 1e-60] {
        let err = load_error(&tiny_hf(&dir, |c| c["layer_norm_eps"] = eps.into()));
        assert!(
            err.contains("config.json: layer_norm_eps is ")
                && err.contains("invalid, expected a positive number"),
            "{eps}: {err}"
        );
    }
    let text = preprocessor(|j| j["image_std"] = serde_json::json!([0.2, 0.0, 0.2]));
    let err = load_error(&model_copy(
        &dir,
        "std",
        &[("preprocessor_config.json", &text)],
    ));
    assert!(
        err.contains(
            "preprocessor_config.json: image_std is [0.2, 0.0, 0.2]: invalid, channel 1 is 0"
        ),
        "{err}"
    );
    let model = model_copy(&dir, "w", &[]);
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let data = st.tensor("classifier.bias").unwrap().data();
    let at = data.as_ptr() as usize - bytes.as_ptr() as usize;
    let mut changed = bytes.clone();
    changed[at..at + 4].copy_from_slice(&1e30f32.to_le_bytes());
    std::fs::write(model.join("model.safetensors"), changed).unwrap();
    let err = load_error(&model);
    assert!(
        err.contains("model.safetensors: tensor classifier.bias holds 1e30 at index 0"),
        "{err}"
    );
}

#[test]
fn u5_a_cmyk_jpeg_converts_as_pil_and_a_zero_height_one_says_why() {
    let dir = scratch("h-u5");
    // Flat 8x8 blocks of raw CMYK as libjpeg stores it (Adobe's inverted
    // convention, which PIL assumes), and the RGB PIL's convert("RGB") gives,
    // worked out by hand from PIL's formula r = nk - nk * c / 255 on the inverted
    // channels: white, black, magenta, grey, and a mix.
    let blocks: [([u8; 4], [u8; 3]); 5] = [
        ([255, 255, 255, 255], [255, 255, 255]),
        ([0, 0, 0, 255], [0, 0, 0]),
        ([255, 0, 255, 255], [255, 0, 255]),
        ([255, 255, 255, 128], [128, 128, 128]),
        ([191, 255, 255, 191], [143, 191, 191]),
    ];
    let (w, h) = (8 * blocks.len(), 8);
    let raw: Vec<u8> = (0..w * h).flat_map(|i| blocks[(i % w) / 8].0).collect();
    let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_CMYK);
    compress.set_size(w, h);
    compress.set_quality(100.0);
    let mut started = compress.start_compress(Vec::new()).unwrap();
    started.write_scanlines(&raw).unwrap();
    let jpeg = started.finish().unwrap();
    let file = dir.join("cmyk.jpg");
    std::fs::write(&file, &jpeg).unwrap();
    let img = neuronpath::data::decode::open(&file).unwrap();
    assert_eq!((img.width, img.height), (w, h));
    for (i, px) in img.pixels.chunks_exact(3).enumerate() {
        assert_eq!(px, blocks[(i % w) / 8].1, "pixel {i}");
    }
    // A JPEG whose header says 0 rows.
    let mut bytes = std::fs::read(common::shared("data/cifar10-test/cat/0000.jpg")).unwrap();
    let sof = bytes.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&[0, 0]);
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, bytes).unwrap();
    let err = format!("{:#}", neuronpath::data::decode::open(&empty).unwrap_err());
    assert!(
        err.contains("empty.jpg") && err.contains("Empty JPEG image"),
        "{err}"
    );
}

#[test]
fn u6_prune_names_the_malformed_record_not_a_valid_one() {
    let (dir, images, p) = found("h-u6", &["cat", "dog"], 2);
    let bad = dir.join("bad.jsonl");
    edited(&p, &bad, 0, |r| {
        for field in ["path", "activation", "gradient", "contribution", "sites"] {
            r[field].as_array_mut().unwrap().pop();
        }
    });
    let run = neuronpath()
        .args(["prune", "--method", "activation", "--top-k", "1", "--paths"])
        .arg(&bad)
        .arg("--images")
        .arg(&images)
        .output()
        .unwrap();
    fails_with(
        &run,
        &[
            "bad.jsonl",
            "cat/0000.jpg (activation): the path has 5 layers but the model has 6",
        ],
    );
    assert!(!String::from_utf8_lossy(&run.stderr).contains("dog/0000.jpg"));
}

#[test]
fn u7_resuming_with_another_unit_names_the_unit() {
    let (_, images, p) = found("h-u7", &["cat"], 1);
    let before = std::fs::read(&p).unwrap();
    let run = paths(&images, &p, &["--unit", "head"]);
    fails_with(
        &run,
        &["made with unit blocks.0.mlp.post@cls, but this run has unit blocks.0.attn.z@cls"],
    );
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

#[test]
fn u8_flags_that_do_nothing_for_the_model_are_refused() {
    let dir = scratch("h-u8");
    let names = dir.join("names.txt");
    std::fs::write(&names, "a\nb\n").unwrap();
    let npz = common::shared("fixtures/tiny-vit-google.npz");
    for (args, want) in [
        (
            vec!["--heads", "4"],
            "--heads 4: a Hugging Face checkpoint's config.json gives its head count (4)",
        ),
        (
            vec!["--logit-scale", "50"],
            "--logit-scale is for a CLIP vision tower",
        ),
        (
            vec!["--class-names", names.to_str().unwrap()],
            "--class-names is for a CLIP vision tower",
        ),
        (
            vec!["--heads", "2", "--model", npz.to_str().unwrap()],
            "tiny-vit-google.npz is a Google .npz",
        ),
    ] {
        let run = neuronpath().arg("inspect").args(&args).output().unwrap();
        fails_with(&run, &[want]);
    }
}

#[test]
fn u9_a_link_loop_and_a_folder_with_a_pth_say_what_to_pass() {
    let dir = scratch("h-u9");
    let looped = dir.join("loop");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let run = neuronpath()
        .args(["inspect", "--model"])
        .arg(&looped)
        .output()
        .unwrap();
    fails_with(
        &run,
        &[
            "loop: no such checkpoint file or directory, or it cannot be read",
            "symbolic links",
        ],
    );
    let folder = dir.join("mae");
    std::fs::create_dir_all(&folder).unwrap();
    let mae = common::shared("fixtures/mae-cifar10");
    std::fs::copy(mae.join("mae-cifar10.pth"), folder.join("model.pth")).unwrap();
    std::fs::copy(mae.join("config.json"), folder.join("config.json")).unwrap();
    let run = neuronpath()
        .args(["inspect", "--model"])
        .arg(&folder)
        .output()
        .unwrap();
    fails_with(&run, &["model.pth: pass that file as --model"]);
}

#[test]
fn u10_a_label_map_with_a_folder_twice_or_an_array_is_refused() {
    let dir = scratch("h-u10");
    let images = dir.join("images");
    for folder in ["n0", "n1"] {
        std::fs::create_dir_all(images.join(folder)).unwrap();
        let cat = common::shared("data/cifar10-test/cat/0000.jpg");
        std::fs::copy(cat, images.join(folder).join("0000.jpg")).unwrap();
    }
    for (file, text, want) in [
        (
            "twice.json",
            r#"{"n0": 3, "n1": 5, "n0": 4}"#,
            "twice.json: not a label map: key \"n0\" given twice",
        ),
        (
            "array.json",
            r#"["n0", "n1"]"#,
            "array.json: not a label map: a JSON array",
        ),
        (
            "twice.txt",
            "n0 cat\nn1 dog\nn0 cat\n",
            "twice.txt: not a label map: folder n0 is given twice, for classes 0 and 2",
        ),
    ] {
        let map = dir.join(file);
        std::fs::write(&map, text).unwrap();
        let run = paths(
            &images,
            &dir.join("p.jsonl"),
            &["--label-map", map.to_str().unwrap()],
        );
        fails_with(&run, &[want]);
        assert!(!dir.join("p.jsonl").exists());
    }
}

/// The pixels of the bundled model's input for `image` with the preprocessor `text`.
fn preprocessed(dir: &Path, text: &str, image: &Path) -> anyhow::Result<Vec<f32>> {
    let model = model_copy(dir, "pre", &[("preprocessor_config.json", text)]);
    let vit = load(&model, &LoadOptions::default())?;
    neuronpath::data::load_image(image, &vit, &vit.normalization)
}

fn close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() < 1e-5 * (1.0 + w.abs()),
            "value {i}: {g} vs {w}"
        );
    }
}

/// A PNG of `w x h` pixels, value `(x * 7 + y * 13 + c * 50) % 256`.
fn png(path: &Path, w: usize, h: usize) -> Vec<u8> {
    let pixels: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i / 3 % w) * 7 + (i / 3 / w) * 13 + (i % 3) * 50) as u8)
        .collect();
    let mut encoder = png::Encoder::new(std::fs::File::create(path).unwrap(), w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(&pixels)
        .unwrap();
    pixels
}

#[test]
fn u11_rescale_resize_and_crop_size_are_honoured_as_hugging_face_does() {
    let dir = scratch("h-u11");
    let cat = common::shared("data/cifar10-test/cat/0000.jpg");
    let rgb = neuronpath::data::decode::open(&cat).unwrap();
    let plane = |f: &dyn Fn(f64) -> f64| -> Vec<f64> {
        (0..3)
            .flat_map(|c| rgb.pixels.chunks_exact(3).map(move |p| p[c] as f64))
            .map(f)
            .collect()
    };
    // do_rescale false: (x - mean) / std on pixels 0..255.
    let text = preprocessor(|j| {
        j["do_rescale"] = false.into();
        j["image_mean"] = serde_json::json!([0.5, 0.5, 0.5]);
        j["image_std"] = serde_json::json!([0.5, 0.5, 0.5]);
    });
    close(
        &preprocessed(&dir, &text, &cat).unwrap(),
        &plane(&|x| (x - 0.5) / 0.5),
    );
    // rescale_factor 1/127.5 with mean and std 1: x / 127.5 - 1.
    let text = preprocessor(|j| {
        j["rescale_factor"] = (1.0 / 127.5).into();
        j["image_mean"] = serde_json::json!([1.0, 1.0, 1.0]);
        j["image_std"] = serde_json::json!([1.0, 1.0, 1.0]);
    });
    close(
        &preprocessed(&dir, &text, &cat).unwrap(),
        &plane(&|x| x / 127.5 - 1.0),
    );
    // do_resize false: a 32x32 image as it is; a 40x30 one is not the model's size.
    let identity = |j: &mut serde_json::Value| {
        j["do_resize"] = false.into();
        j["do_normalize"] = false.into();
    };
    close(
        &preprocessed(&dir, &preprocessor(identity), &cat).unwrap(),
        &plane(&|x| x / 255.0),
    );
    let odd = dir.join("odd.png");
    let pixels = png(&odd, 40, 30);
    let err = format!(
        "{:#}",
        preprocessed(&dir, &preprocessor(identity), &odd).unwrap_err()
    );
    assert!(
        err.contains("odd.png") && err.contains("40x30") && err.contains("do_resize is false"),
        "{err}"
    );
    // ... and centre-cropped to 32x32: rows padded with black (one above, one
    // below), columns 4..36, as Hugging Face's center_crop pads then slices.
    let text = preprocessor(|j| {
        identity(j);
        j["do_center_crop"] = true.into();
        j["crop_size"] = serde_json::json!({"height": 32, "width": 32});
    });
    let mut want = vec![0.0; 3 * 32 * 32];
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                let (sy, sx) = (y as i64 - 1, x + 4);
                if (0..30).contains(&sy) {
                    want[c * 1024 + y * 32 + x] =
                        pixels[(sy as usize * 40 + sx) * 3 + c] as f64 / 255.0;
                }
            }
        }
    }
    close(&preprocessed(&dir, &text, &odd).unwrap(), &want);
    // A crop or a size the model cannot take is refused at load.
    for (edit, want) in [
        (
            serde_json::json!({"do_center_crop": true, "crop_size": {"height": 24, "width": 24}}),
            "crop_size is 24x24, but the model takes 32x32",
        ),
        (
            serde_json::json!({"size": {"height": 64, "width": 64}}),
            "size is 64x64 and do_center_crop is false",
        ),
        (
            serde_json::json!({"size": {"longest_edge": 64}}),
            "size.longest_edge is not supported",
        ),
    ] {
        let text = preprocessor(|j| {
            for (k, v) in edit.as_object().unwrap() {
                j[k] = v.clone();
            }
        });
        let err = format!("{:#}", preprocessed(&dir, &text, &cat).unwrap_err());
        assert!(
            err.contains("preprocessor_config.json: ") && err.contains(want),
            "{err}"
        );
    }
}

#[test]
fn u12_prune_top_k_out_of_range_is_refused() {
    for k in ["0", "513"] {
        let run = neuronpath().args(["prune", "--top-k", k]).output().unwrap();
        fails_with(&run, &[&format!("--top-k {k}: must be 1 to 512")]);
    }
}

#[test]
fn u13_reading_a_file_another_run_writes_says_so() {
    let dir = scratch("h-u13");
    let images = image_folder(&dir, &["ship"], 4);
    let p = dir.join("p.jsonl");
    let mut writer = common::writing(&images, &p);
    let stats = stats(&p, dir.join("s.json"));
    let still_running = writer.try_wait().unwrap().is_none();
    assert!(writer.wait().unwrap().success());
    let stderr = succeeds(&stats);
    if still_running {
        assert!(
            stderr.contains("p.jsonl: another neuronpath run is still writing it"),
            "{stderr}"
        );
    }
}

#[test]
fn u14_a_guessed_head_count_is_said_every_run() {
    let dir = scratch("h-u14");
    let mae = common::shared("fixtures/mae-cifar10");
    let file = dir.join("mae.safetensors");
    std::fs::copy(mae.join("mae-cifar10.safetensors"), &file).unwrap();
    let note = "mae.safetensors: the file stores no head count; 2 heads of 64 were assumed (width 128 / 64)";
    for _ in 0..2 {
        let run = neuronpath()
            .args(["inspect", "--model"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(succeeds(&run).contains(note));
    }
    for fix in [&["--heads", "4"][..], &[]] {
        if fix.is_empty() {
            std::fs::copy(mae.join("config.json"), dir.join("config.json")).unwrap();
        }
        let run = neuronpath()
            .args(["inspect", "--model"])
            .arg(&file)
            .args(fix)
            .output()
            .unwrap();
        assert!(!succeeds(&run).contains("no head count"));
    }
}
