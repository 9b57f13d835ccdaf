//! The command line never destroys a user's data and never answers another question
//! than the one asked: output files that are not its own are refused untouched, one
//! run writes a file at a time, a resumed file must match the run's settings,
//! class folders are labelled by name, bad files do not stop a dataset, and the
//! experiments refuse another model or other images than the paths were found on.

mod common;
use common::{
    fails_with, image_folder, manipulate, neuronpath, other_model, paths, records, scratch,
    succeeds,
};
use std::path::{Path, PathBuf};

#[test]
fn files_that_are_not_the_commands_own_are_left_untouched() {
    let dir = scratch("untouched");
    let images = image_folder(&dir, &["cat"], 2);
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "my notes\nmore notes\n").unwrap();
    fails_with(
        &paths(&images, &notes, &[]),
        &["notes.txt: line 1", "not a path record"],
    );
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "my notes\nmore notes\n"
    );

    let p = dir.join("p.jsonl");
    succeeds(&paths(&images, &p, &[]));
    let before = std::fs::read(&p).unwrap();
    let m = manipulate(&images, &p, &p, &[]);
    fails_with(&m, &["p.jsonl: line 1", "not a manipulation record"]);
    assert_eq!(
        std::fs::read(&p).unwrap(),
        before,
        "manipulate --out paths.jsonl"
    );

    // Whole-file outputs replace only their own kind.
    let p_arg = p.to_str().unwrap();
    let notes_arg = notes.to_str().unwrap();
    for argv in [
        &["stats", "--paths", p_arg, "--out", p_arg][..],
        &["report", "--paths", p_arg, "--out", notes_arg],
        &[
            "prune", "--top-k", "1", "--paths", p_arg, "--out", notes_arg,
        ],
    ] {
        let run = neuronpath().args(argv).output().unwrap();
        fails_with(&run, &["is not an output of this command"]);
    }
    assert_eq!(std::fs::read(&p).unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "my notes\nmore notes\n"
    );
    let stats = dir.join("stats.json");
    for _ in 0..2 {
        let run = neuronpath()
            .args(["stats", "--paths", p_arg, "--out"])
            .arg(&stats)
            .output();
        succeeds(&run.unwrap());
    }

    // A blank line in the middle loses nothing, and nothing is recomputed.
    let text = String::from_utf8(before).unwrap();
    let (first, rest) = text.split_at(text.find('\n').unwrap() + 1);
    let gapped = format!("{first}\n{rest}");
    std::fs::write(&p, &gapped).unwrap();
    assert!(succeeds(&paths(&images, &p, &[])).contains("0 images written"));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), gapped);

    // A last line of other JSON is not a torn record: refused, not cut.
    let foreign = format!("{gapped}{{\"note\": 1}}");
    std::fs::write(&p, &foreign).unwrap();
    fails_with(&paths(&images, &p, &[]), &["p.jsonl: line 4"]);
    assert_eq!(std::fs::read_to_string(&p).unwrap(), foreign);
    // A torn record is cut, and the image redone.
    std::fs::write(&p, format!("{first}{}", &rest[..rest.len() / 2])).unwrap();
    assert!(succeeds(&paths(&images, &p, &[])).contains("1 images written"));
    assert_eq!(records(&p).len(), 2);
}

#[test]
fn a_second_run_on_the_same_file_stops() {
    let dir = scratch("lock");
    let images = image_folder(&dir, &["ship"], 4);
    let out = dir.join("p.jsonl");
    let mut first = common::writing(&images, &out);
    let second = neuronpath()
        .args(["paths", "--method", "jas", "--batch", "1", "--images"])
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let still_running = first.try_wait().unwrap().is_none();
    assert!(first.wait().unwrap().success());
    if still_running {
        fails_with(
            &second,
            &["p.jsonl", "another neuronpath run is writing this file"],
        );
    }
    assert_eq!(records(&out).len(), 4, "every image once, no torn line");
}

#[test]
fn a_resumed_file_must_match_the_runs_settings() {
    let dir = scratch("settings");
    let images = image_folder(&dir, &["cat"], 2);
    let out = dir.join("p.jsonl");
    succeeds(&paths(&images, &out, &[]));
    let before = std::fs::read(&out).unwrap();
    let model = other_model(&dir);
    let model = model.to_str().unwrap();
    for (flags, want) in [
        (&["--steps", "2"][..], "steps 1, but this run has steps 2"),
        (
            &["--target", "predicted"][..],
            "target label, but this run has target predicted",
        ),
        (
            &["--preprocess", "reference"][..],
            "preprocessing checkpoint",
        ),
        (&["--integration", "gauss-legendre"][..], "integration"),
        (&["--score-form", "paper"][..], "score form"),
        (&["--model", model][..], "model fingerprint"),
    ] {
        let run = paths(&images, &out, flags);
        fails_with(&run, &["p.jsonl: line 1", want, "another file"]);
        assert_eq!(std::fs::read(&out).unwrap(), before, "{flags:?}");
    }
    // The same model elsewhere is the same model.
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/vit-cifar10");
    for f in [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(src.join(f), copy.join(f)).unwrap();
    }
    let again = paths(&images, &out, &["--model", copy.to_str().unwrap()]);
    assert!(succeeds(&again).contains("2 already there"));
}

#[test]
fn class_folders_are_labelled_by_the_models_class_names() {
    let dir = scratch("labels");
    let images = image_folder(&dir, &["cat", "dog"], 1);
    std::fs::rename(images.join("dog"), images.join("Dog")).unwrap();
    std::fs::create_dir_all(images.join(".ipynb_checkpoints")).unwrap();
    std::fs::copy(
        images.join("cat/0000.jpg"),
        images.join(".ipynb_checkpoints/x.jpg"),
    )
    .unwrap();
    let out = dir.join("p.jsonl");
    succeeds(&paths(&images, &out, &[]));
    let got: Vec<(String, u64, String)> = records(&out)
        .iter()
        .map(|r| {
            let name = r["label_name"].as_str().unwrap().to_string();
            (
                r["image"].as_str().unwrap().into(),
                r["target"].as_u64().unwrap(),
                name,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Dog/0000.jpg".into(), 5, "dog".into()),
            ("cat/0000.jpg".into(), 3, "cat".into())
        ]
    );

    // Synset-like folders: fewer than the classes is refused, a label map is used.
    let synsets = dir.join("synsets");
    for folder in ["n01", "n02"] {
        std::fs::create_dir_all(synsets.join(folder)).unwrap();
        std::fs::copy(
            images.join("cat/0000.jpg"),
            synsets.join(folder).join("a.jpg"),
        )
        .unwrap();
    }
    fails_with(
        &paths(&synsets, &dir.join("s.jsonl"), &[]),
        &["synsets", "--label-map"],
    );
    let map = dir.join("map.json");
    std::fs::write(&map, r#"{"n01": "cat", "n02": 8}"#).unwrap();
    let mapped = paths(
        &synsets,
        &dir.join("s.jsonl"),
        &["--label-map", map.to_str().unwrap()],
    );
    succeeds(&mapped);
    let targets: Vec<u64> = records(&dir.join("s.jsonl"))
        .iter()
        .map(|r| r["target"].as_u64().unwrap())
        .collect();
    assert_eq!(targets, [3, 8]);
}

/// A command that needs no labels (`paths --target predicted`, `manipulate`,
/// `neurons`) runs on class folders that name none of the model's classes, the
/// images unlabelled (and said so); one that needs them (`paths --target label`,
/// `prune`) stops asking for `--label-map`, as does a partial match always.
#[test]
fn folders_that_name_no_class_are_unlabelled_where_labels_are_not_needed() {
    let dir = scratch("unlabelled");
    let labelled = image_folder(&dir, &["cat", "dog"], 1);
    let mine = dir.join("mine");
    std::fs::create_dir_all(mine.join("any")).unwrap();
    for (i, class) in ["cat", "dog"].iter().enumerate() {
        let file = format!("{i}.jpg");
        std::fs::copy(
            labelled.join(class).join("0000.jpg"),
            mine.join("any").join(file),
        )
        .unwrap();
    }
    let out = dir.join("p.jsonl");
    fails_with(&paths(&mine, &out, &[]), &["mine", "--label-map"]);
    assert!(!out.exists(), "a stopped run wrote {}", out.display());
    let predicted = ["--target", "predicted", "--steps", "2"];
    let stderr = succeeds(&paths(&mine, &out, &predicted));
    assert!(
        stderr.contains("any) name none of the model's classes"),
        "{stderr}"
    );
    assert!(stderr.contains("unlabelled (label null)"), "{stderr}");
    // The same paths as on the labelled folder, the labels null.
    let by_name = dir.join("labelled.jsonl");
    succeeds(&paths(&labelled, &by_name, &predicted));
    let (got, want) = (records(&out), records(&by_name));
    assert_eq!(got.len(), 2);
    for (got, want) in got.iter().zip(&want) {
        assert!(
            got["label"].is_null() && got["label_name"].is_null(),
            "{got}"
        );
        assert!(want["label"].is_u64(), "{want}");
        for field in ["path", "score", "target", "target_prob", "predicted"] {
            assert_eq!(got[field], want[field], "{field}");
        }
    }
    succeeds(&manipulate(&mine, &out, &dir.join("m.jsonl"), &[]));
    assert_eq!(records(&dir.join("m.jsonl")).len(), 4);
    let neurons = |images: &Path, out: &Path| {
        neuronpath()
            .args(["neurons", "--neurons", "0:1", "--top", "2", "--images"])
            .arg(images)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    assert!(succeeds(&neurons(&mine, &dir.join("n.jsonl"))).contains("unlabelled"));
    succeeds(&neurons(&labelled, &dir.join("n-labelled.jsonl")));
    let (got, want) = (
        records(&dir.join("n.jsonl")),
        records(&dir.join("n-labelled.jsonl")),
    );
    let tops = |r: &serde_json::Value| -> Vec<(serde_json::Value, serde_json::Value)> {
        let top = r["top"].as_array().unwrap();
        top.iter()
            .map(|e| (e["activation"].clone(), e["label"].clone()))
            .collect()
    };
    let activations = |r: &serde_json::Value| -> Vec<serde_json::Value> {
        tops(r).into_iter().map(|(a, _)| a).collect()
    };
    assert_eq!(activations(&got[0]), activations(&want[0]));
    assert!(tops(&got[0]).iter().all(|(_, label)| label.is_null()));
    assert!(got[0]["class_count"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c == 0));
    let prune = neuronpath()
        .args(["prune", "--top-k", "1", "--images"])
        .arg(&mine)
        .arg("--paths")
        .arg(&out)
        .arg("--out")
        .arg(dir.join("prune.json"))
        .output()
        .unwrap();
    fails_with(&prune, &["mine", "--label-map"]);
    // Some folders name a class, others not: a misspelt class, never unlabelled.
    std::fs::create_dir_all(mine.join("cat")).unwrap();
    std::fs::copy(labelled.join("cat/0000.jpg"), mine.join("cat/0.jpg")).unwrap();
    fails_with(
        &paths(&mine, &dir.join("partial.jsonl"), &predicted),
        &[
            "any",
            "match none of the model's class names",
            "--label-map",
        ],
    );
}

#[cfg(unix)]
#[test]
fn bad_files_and_odd_trees_never_stop_a_dataset() {
    use std::os::unix::ffi::OsStrExt;
    let dir = scratch("odd-trees");
    let images = image_folder(&dir, &["cat", "dog"], 1);
    let jpeg = std::fs::read(images.join("dog/0000.jpg")).unwrap();
    // A PNG whose header claims 100000 x 100000 pixels.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    let ihdr = [
        &100000u32.to_be_bytes()[..],
        &100000u32.to_be_bytes(),
        &[8, 2, 0, 0, 0],
    ]
    .concat();
    png.extend(&ihdr);
    let crc = !ihdr_crc(&[b"IHDR", &ihdr[..]].concat());
    png.extend(crc.to_be_bytes());
    std::fs::write(images.join("cat/huge.png"), png).unwrap();
    let fifo = std::ffi::CString::new(images.join("cat/fifo.jpg").as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("..", images.join("cat/loop")).unwrap();
    std::os::unix::fs::symlink("../cat", images.join("dog/loop")).unwrap();
    for name in [&b"\xff.jpg"[..], b"\xfe.jpg", b"%FF.jpg"] {
        std::fs::write(
            images.join("dog").join(std::ffi::OsStr::from_bytes(name)),
            &jpeg,
        )
        .unwrap();
    }
    let out = dir.join("p.jsonl");
    let stderr = succeeds(&paths(&images, &out, &[]));
    assert!(
        stderr.contains("huge.png") && stderr.contains("1 failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fifo.jpg") && stderr.contains("loop"),
        "{stderr}"
    );
    let mut keys: Vec<String> = records(&out)
        .iter()
        .map(|r| r["image"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cat/0000.jpg",
            "dog/%25FF.jpg",
            "dog/%FE.jpg",
            "dog/%FF.jpg",
            "dog/0000.jpg"
        ]
    );
    // The experiments find every file again by its key.
    let m = manipulate(&images, &out, &dir.join("m.jsonl"), &["--op", "remove"]);
    assert!(succeeds(&m).contains("0 images failed"));
}

/// CRC-32 (PNG's) of `bytes`, before the final inversion.
fn ihdr_crc(bytes: &[u8]) -> u32 {
    bytes.iter().fold(!0u32, |c, &b| {
        (0..8).fold(c ^ b as u32, |c, _| {
            if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            }
        })
    })
}

#[test]
fn experiments_refuse_another_model_or_other_images() {
    let dir = scratch("consistency");
    let images = image_folder(&dir, &["cat", "ship"], 1);
    let out = dir.join("p.jsonl");
    succeeds(&paths(&images, &out, &[]));
    let m = dir.join("m.jsonl");
    let model = other_model(&dir);
    let other = manipulate(&images, &out, &m, &["--model", model.to_str().unwrap()]);
    fails_with(&other, &["p.jsonl", "another model"]);
    // The same names, other images.
    let swapped = dir.join("swapped");
    std::fs::create_dir_all(swapped.join("cat")).unwrap();
    std::fs::create_dir_all(swapped.join("ship")).unwrap();
    std::fs::copy(images.join("ship/0000.jpg"), swapped.join("cat/0000.jpg")).unwrap();
    std::fs::copy(images.join("cat/0000.jpg"), swapped.join("ship/0000.jpg")).unwrap();
    fails_with(
        &manipulate(&swapped, &out, &m, &[]),
        &["cat/0000.jpg", "not the image"],
    );
    // Records of older versions carry no fingerprints: the clean probability tells.
    let old = dir.join("old.jsonl");
    let stripped: String = records(&out)
        .into_iter()
        .map(|mut r| {
            for key in ["model_fingerprint", "image_fingerprint", "seed"] {
                r.as_object_mut().unwrap().remove(key);
            }
            format!("{r}\n")
        })
        .collect();
    std::fs::write(&old, stripped).unwrap();
    fails_with(
        &manipulate(&swapped, &old, &m, &[]),
        &["old.jsonl", "p(target"],
    );
    let other = manipulate(&images, &old, &m, &["--model", model.to_str().unwrap()]);
    fails_with(
        &other,
        &["old.jsonl", "another model, image or preprocessing"],
    );
    succeeds(&manipulate(&images, &out, &m, &[]));
}

#[test]
fn flags_out_of_range_are_refused_clearly() {
    let dir = scratch("ranges");
    let out = dir.join("p.jsonl");
    for (flag, value) in [
        ("--steps", "18446744073709551615"),
        ("--steps", "0"),
        ("--batch", "0"),
        ("--threads", "0"),
        ("--threads", "100000"),
    ] {
        let run = neuronpath()
            .args(["paths", flag, value, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        fails_with(&run, &[flag, "is not in"]);
    }
    assert!(!out.exists());
    // A GPU that is not there is named, and where to see those that are.
    let run = neuronpath()
        .args(["paths", "--gpu", "99", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    fails_with(&run, &["--gpu 99", "neuronpath devices"]);
    assert!(!out.exists());
}
