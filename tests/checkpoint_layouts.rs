//! What the layouts of issue 22 add beyond `families.rs`' forward and gradients:
//! the class rows that Hugging Face's `CLIPModel` and `SiglipModel` and open_clip
//! compute from class names with their own text towers and tokenizers (equal to the libraries' text embeddings, 1e-5),
//! prompt ensembles as open_clip builds them, DINOv2's position embeddings
//! interpolated to other sizes as Hugging Face does (1e-5 of the largest), a CLS
//! probe on a backbone, the refusals, and every command (paths, manipulate,
//! neurons, report) on each layout.

mod common;
use common::{close, family_fixtures, fixture, Fixture};
use neuronpath::model::{self, LoadOptions, Probe, Vit};

fn own(name: &str) -> Fixture {
    family_fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap()
}

fn array(f: &Fixture, key: &str) -> Vec<f32> {
    f.reference()[key].to_f32().unwrap()
}

#[test]
fn class_rows_equal_the_libraries_text_embeddings() {
    for name in [
        "clip-hf",
        "open-clip safetensors",
        "open-clip bin",
        "siglip",
    ] {
        let f = own(name);
        let vit = f.load();
        let z = vit.weights.zero_shot.as_ref().unwrap();
        close(name, &z.text, &array(&f, "text_embeds"), 1e-5);
        let scale = array(&f, "logit_scale")[0];
        assert!(
            (z.scale - scale).abs() <= 1e-6 * scale,
            "{name}: scale {} vs {scale}",
            z.scale
        );
        // SigLIP's bias as stored (CLIP has none: 0).
        let bias = match name {
            "siglip" => array(&f, "logit_bias")[0],
            _ => 0.0,
        };
        assert_eq!(z.bias, bias, "{name}: bias");
        let names: Vec<&str> = vit
            .class_names
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(names, common::FIXTURE_CLASSES);
    }
    // Three prompts per class, as open_clip's build_zero_shot_classifier.
    let f = own("open-clip safetensors");
    let options = LoadOptions {
        prompts: [
            "a photo of a {}.",
            "a bad photo of the {}.",
            "itap of my {}.",
        ]
        .map(String::from)
        .to_vec(),
        ..f.options.clone()
    };
    let vit = model::load(&f.model, &options).unwrap();
    let rows = &vit.weights.zero_shot.unwrap().text;
    close("ensemble", rows, &array(&f, "text_embeds_ensemble"), 1e-5);
}

/// A SentencePiece model (protobuf `ModelProto`) without its last `pieces` entry
/// (field 1, length-delimited), every other field as it was.
fn without_last_piece(model: &[u8]) -> Vec<u8> {
    let varint = |at: &mut usize| -> u64 {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let byte = model[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        value
    };
    let mut fields = Vec::new();
    let mut at = 0;
    while at < model.len() {
        let start = at;
        let key = varint(&mut at);
        assert_eq!(key & 7, 2, "every ModelProto field is length-delimited");
        let length = varint(&mut at) as usize;
        at += length;
        fields.push((key >> 3, start..at));
    }
    let last = fields.iter().rposition(|(field, _)| *field == 1).unwrap();
    fields.remove(last);
    fields
        .into_iter()
        .flat_map(|(_, r)| model[r].to_vec())
        .collect()
}

/// The patch rows of the position embedding (CLS and registers left out).
fn patch_positions(vit: &Vit) -> Vec<f32> {
    let d = vit.config.hidden;
    vit.weights.pos_embed[vit.config.family.prefix_tokens() * d..].to_vec()
}

#[test]
fn dinov2_positions_are_interpolated_as_hugging_face_does() {
    for name in ["dinov2-resized", "dinov2-registers-resized"] {
        let f = own(name);
        for size in [None, Some(72)] {
            let options = LoadOptions {
                image_size: size,
                ..f.options.clone()
            };
            let vit = model::load(&f.model, &options).unwrap();
            let size = size.unwrap_or(32);
            assert_eq!(vit.config.image_size, size, "{name}");
            // Its processor's resize (shortest edge 36 for a crop of 32) keeps its
            // ratio to the crop at the size run.
            let geometry = &vit.normalization.geometry;
            assert_eq!(geometry.shortest_edge, Some(36 * size / 32), "{name}");
            assert!(geometry.crop, "{name}");
            let want = array(&f, &format!("position_embeddings_{size}"));
            let d = vit.config.hidden;
            let tol = 1e-5 * want.iter().fold(0f32, |m, v| m.max(v.abs()));
            close(
                &format!("{name} CLS at {size}"),
                &vit.weights.pos_embed[..d],
                &want[..d],
                0.0,
            );
            close(
                &format!("{name} at {size}"),
                &patch_positions(&vit),
                &want[d..],
                tol,
            );
        }
    }
}

#[test]
fn a_cls_probe_reads_the_final_cls_token() {
    let f = own("dinov2-backbone");
    let options = LoadOptions {
        head: Some(Probe {
            weight: fixture("dinov2-backbone/head_cls.npy"),
            bias: None,
        }),
        ..LoadOptions::default()
    };
    let vit = model::load(&f.model, &options).unwrap();
    let pixels = array(&f, "pixel_values");
    let want = array(&f, "logits_cls");
    for (b, p) in pixels.chunks_exact(pixels.len() / 3).enumerate() {
        let got = vit.clean_forward(p).logits;
        close(&format!("image {b}"), &got, &want[b * 5..(b + 1) * 5], 1e-4);
    }
}

/// The error of loading `model` with `options`, which must fail.
fn refused(model: &std::path::Path, options: LoadOptions) -> String {
    match model::load(model, &options) {
        Ok(_) => panic!("{}: loaded with {options:?}", model.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn what_a_checkpoint_does_not_say_is_asked_for_and_what_it_cannot_be_is_refused() {
    let timm = fixture("timm-clip/model.safetensors");
    let e = refused(&timm, LoadOptions::default());
    assert!(
        e.contains("norm_pre.weight") && e.contains("--activation") && e.contains("timm-clip"),
        "{e}"
    );
    // The quick-GELU architecture says it; the other activation contradicts it.
    let quick = fixture("timm-clip-quickgelu");
    let e = refused(
        &quick,
        LoadOptions {
            activation: Some(model::FfnActivation::GeluErf),
            ..own("timm-clip-quickgelu").options
        },
    );
    assert!(e.contains("quick"), "{e}");
    // Its projection without a classifier.
    let e = refused(&quick, LoadOptions::default());
    assert!(e.contains("head.bias") && e.contains("--classifier"), "{e}");
    // An open_clip state dict alone: its activation is not in it.
    let dir = common::scratch("open-clip-alone");
    let alone = dir.join("ViT-tiny.bin");
    std::fs::copy(fixture("open-clip/open_clip_pytorch_model.bin"), &alone).unwrap();
    let open_clip = own("open-clip bin").options;
    let e = refused(&alone, open_clip.clone());
    assert!(
        e.contains("ViT-tiny.bin") && e.contains("--activation"),
        "{e}"
    );
    // With its config beside it, the bundled OpenAI vocabulary is not its text tower's,
    // and an activation against the config's is refused.
    std::fs::copy(
        fixture("open-clip/open_clip_config.json"),
        dir.join("open_clip_config.json"),
    )
    .unwrap();
    let e = refused(
        &alone,
        LoadOptions {
            tokenizer: None,
            ..open_clip.clone()
        },
    );
    assert!(
        e.contains("49408") && e.contains("1014") && e.contains("--tokenizer"),
        "{e}"
    );
    let gelu = LoadOptions {
        activation: Some(model::FfnActivation::GeluErf),
        ..open_clip.clone()
    };
    let e = refused(&alone, gelu);
    assert!(
        e.contains("open_clip_config.json") && e.contains("QuickGelu"),
        "{e}"
    );
    // open_clip towers that are not CLIP's.
    let config = std::fs::read_to_string(fixture("open-clip/open_clip_config.json")).unwrap();
    std::fs::write(
        dir.join("open_clip_config.json"),
        config.replace(
            "\"context_length\"",
            "\"hf_tokenizer_name\": \"timm/ViT-B-16-SigLIP\", \"context_length\"",
        ),
    )
    .unwrap();
    let e = refused(&alone, open_clip.clone());
    assert!(
        e.contains("hf_tokenizer_name") && e.contains("open_clip_config.json"),
        "{e}"
    );
    // SiglipModel: a tokenizer that is not a SentencePiece model, a SentencePiece
    // vocabulary of another size than its text tower's, and a vision tower alone
    // without the logit bias its sigmoid needs.
    let siglip = own("siglip").options;
    let e = refused(
        &fixture("siglip"),
        LoadOptions {
            tokenizer: Some(fixture("clip-hf/tokenizer.json")),
            ..siglip.clone()
        },
    );
    assert!(e.contains("tokenizer.json"), "{e}");
    let dir = common::scratch("siglip-vocab");
    for file in ["config.json", "model.safetensors", "tokenizer_config.json"] {
        std::fs::copy(fixture(&format!("siglip/{file}")), dir.join(file)).unwrap();
    }
    let e = refused(&dir, siglip.clone());
    assert!(e.contains("spiece.model"), "{e}");
    // Its spiece.model less its last piece: 39 pieces for the tower's 40 rows.
    let model = std::fs::read(fixture("siglip/spiece.model")).unwrap();
    std::fs::write(dir.join("spiece.model"), without_last_piece(&model)).unwrap();
    let e = refused(&dir, siglip.clone());
    assert!(
        e.contains("spiece.model") && e.contains("39") && e.contains("40"),
        "{e}"
    );
    // A vision tower alone, its classifier without the logit_bias.npy beside it.
    let dir = common::scratch("siglip-no-bias");
    std::fs::copy(fixture("siglip-vision/text.npy"), dir.join("text.npy")).unwrap();
    let e = refused(
        &fixture("siglip-vision"),
        LoadOptions {
            classifier: Some(dir.join("text.npy")),
            logit_scale: Some(10.0),
            ..LoadOptions::default()
        },
    );
    assert!(e.contains("--logit-bias"), "{e}");
    // Class options where they do not belong.
    let backbone = own("dinov2-backbone");
    let e = refused(&backbone.model, LoadOptions::default());
    assert!(e.contains("--head") && e.contains("backbone"), "{e}");
    let resized = own("dinov2-resized");
    let e = refused(
        &resized.model,
        LoadOptions {
            head: backbone.options.head.clone(),
            ..LoadOptions::default()
        },
    );
    assert!(
        e.contains("--head") && e.contains("classifier.weight"),
        "{e}"
    );
    let e = refused(
        &resized.model,
        LoadOptions {
            classes: Some(vec!["cat".into()]),
            ..LoadOptions::default()
        },
    );
    assert!(e.contains("--classes"), "{e}");
    let e = refused(
        &timm,
        LoadOptions {
            classes: Some(vec!["cat".into()]),
            ..own("timm-clip").options
        },
    );
    assert!(
        e.contains("text tower") && e.contains("--classifier"),
        "{e}"
    );
    let e = refused(
        &common::shared("fixtures/tiny-vit-hf"),
        LoadOptions {
            image_size: Some(64),
            ..LoadOptions::default()
        },
    );
    assert!(e.contains("--image-size") && e.contains("DINOv2"), "{e}");
    let clip = own("clip-hf");
    for (prompt, expect) in [("a photo", "{}"), ("{} and {}", "{}")] {
        let e = refused(
            &clip.model,
            LoadOptions {
                prompts: vec![prompt.into()],
                ..clip.options.clone()
            },
        );
        assert!(e.contains(expect) && e.contains(prompt), "{e}");
    }
    let e = refused(
        &clip.model,
        LoadOptions {
            classes: Some(vec!["日本".into()]),
            ..clip.options.clone()
        },
    );
    assert!(e.contains("U+65E5"), "{e}");
    let e = refused(&clip.model, LoadOptions::default());
    assert!(e.contains("--classes") && e.contains("--classifier"), "{e}");
    // Options that go with others, or not with this layout.
    let vit = common::shared("fixtures/tiny-vit-hf");
    let e = refused(
        &vit,
        LoadOptions {
            prompts: vec!["a {}".into()],
            ..LoadOptions::default()
        },
    );
    assert!(e.contains("--prompt") && e.contains("--classes"), "{e}");
    let e = refused(
        &vit,
        LoadOptions {
            logit_scale: Some(50.0),
            ..LoadOptions::default()
        },
    );
    assert!(e.contains("--logit-scale"), "{e}");
    let npz = common::shared("fixtures/tiny-vit-google.npz");
    let e = refused(
        &npz,
        LoadOptions {
            head: backbone.options.head.clone(),
            ..LoadOptions::default()
        },
    );
    assert!(
        e.contains("--head") && e.contains("tiny-vit-google.npz"),
        "{e}"
    );
    // A file of no known layout names its tensors.
    let stray = dir.join("stray.safetensors");
    let data = vec![0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    safetensors::serialize_to_file([("encoder.mystery.weight", view)], None, &stray).unwrap();
    let e = refused(&stray, LoadOptions::default());
    assert!(
        e.contains("encoder.mystery.weight") && e.contains("unknown checkpoint layout"),
        "{e}"
    );
}

/// The flags of `f` with zero-shot classes that name CIFAR-10 folders, or a label
/// map for a model whose classes do not.
fn cli_args(
    f: &Fixture,
    dir: &std::path::Path,
) -> (Vec<std::ffi::OsString>, Vec<std::ffi::OsString>) {
    let mut options = f.options.clone();
    if options.classes.is_some() {
        options.classes = Some(vec!["cat".into(), "ship".into()]);
        let f = Fixture {
            options,
            model: f.model.clone(),
            name: f.name,
            reference: f.reference.clone(),
        };
        return (f.args(), vec![]);
    }
    let map = dir.join("labels.json");
    std::fs::write(&map, r#"{"cat": 0, "ship": 1}"#).unwrap();
    (f.args(), vec!["--label-map".into(), map.into()])
}

#[test]
fn every_command_runs_on_every_new_layout() {
    for f in family_fixtures()
        .iter()
        .filter(|f| f.model.starts_with(fixture("")))
    {
        let dir = common::scratch(&format!("layout-{}", f.name.replace(' ', "-")));
        let images = common::image_folder(&dir, &["cat", "ship"], 1);
        let (model, labels) = cli_args(f, &dir);
        let run = |args: &[&str], extra: &[std::ffi::OsString]| {
            let out = common::neuronpath()
                .args(args)
                .args(extra)
                .args(&model)
                .arg("--images")
                .arg(&images)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{} {args:?}: {err}", f.name);
        };
        let out = |name: &str| dir.join(name).into_os_string();
        let paths = out("paths.jsonl");
        run(
            &[
                "paths",
                "--method",
                "jas,activation",
                "--steps",
                "4",
                "--out",
            ],
            &[std::slice::from_ref(&paths), &labels[..]].concat(),
        );
        let text = std::fs::read_to_string(&paths).unwrap();
        assert_eq!(text.lines().count(), 4, "{}", f.name);
        let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert!(
            record["score"].as_f64().unwrap().is_finite(),
            "{}: {record}",
            f.name
        );
        run(
            &["manipulate", "--paths"],
            &[paths.clone(), "--out".into(), out("manipulate.jsonl")],
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("manipulate.jsonl"))
                .unwrap()
                .lines()
                .count(),
            8
        );
        run(
            &["neurons", "--top", "2", "--paths"],
            &[
                &[paths.clone(), "--out".into(), out("neurons.jsonl")],
                &labels[..],
            ]
            .concat(),
        );
        assert!(
            std::fs::read_to_string(dir.join("neurons.jsonl"))
                .unwrap()
                .lines()
                .count()
                > 0
        );
        let report = common::neuronpath()
            .args(["report", "--paths"])
            .arg(&paths)
            .arg("--manipulate")
            .arg(dir.join("manipulate.jsonl"))
            .arg("--neurons")
            .arg(dir.join("neurons.jsonl"))
            .arg("--images")
            .arg(&images)
            .arg("--out")
            .arg(dir.join("report.html"))
            .output()
            .unwrap();
        assert!(
            report.status.success(),
            "{}: {}",
            f.name,
            String::from_utf8_lossy(&report.stderr)
        );
    }
}

#[test]
fn classes_come_from_a_file_one_per_line() {
    let dir = common::scratch("classes-file");
    let file = dir.join("classes.txt");
    std::fs::write(&file, "tench, Tinca tinca\n\n  goldfish  \n").unwrap();
    let out = common::neuronpath()
        .args(["inspect", "--model"])
        .arg(fixture("clip-hf"))
        .arg("--classes")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("classes      2") && stdout.contains("tench, Tinca tinca, goldfish"),
        "{stdout}"
    );
}
