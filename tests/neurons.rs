//! `neuronpath neurons` against brute force: every image run alone through the
//! clean forward pass (itself checked against PyTorch at every token in
//! `families.rs` and `fixture_tiny_vit.rs`), all activations sorted; and the scan's
//! ranking on the family fixtures against PyTorch's own activations, on both
//! executors. Tolerances:
//! activations 1e-5, class means 1e-5 (the sums are exact to 2^-24 per image).

mod common;
use common::executors::BOTH;
use neuronpath::data::{self, ImageSet};
use neuronpath::model::{self, LoadOptions, Tokens, Vit};
use neuronpath::names::Named;
use neuronpath::roles::scan::{Scan, Seen};
use neuronpath::roles::{Neuron, NeuronRecord, Rank};
use std::path::Path;

const NEURONS: &str = "0:1,2:77,5:7,5:300,3:120";

fn bundled() -> Vit {
    model::load(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/vit-cifar10")
            .as_path(),
        &LoadOptions::default(),
    )
    .unwrap()
}

/// The bundled model and the image folder `images`, labelled by its classes.
fn bundled_with(images: &Path) -> (Vit, ImageSet) {
    let vit = bundled();
    let labels = data::labels::Labels {
        names: vit.class_names.as_deref(),
        classes: 10,
        map: None,
        required: false,
    };
    let set = ImageSet::open(images, &labels).unwrap();
    (vit, set)
}

fn records(file: &Path) -> Vec<NeuronRecord> {
    neuronpath::record::read_records(file).unwrap()
}

/// Runs `neurons` and checks it succeeded.
fn scan(images: &Path, out: &Path, extra: &[&str]) {
    let status = common::neuronpath()
        .args([
            "neurons",
            "--neurons",
            NEURONS,
            "--top",
            "5",
            "--batch",
            "7",
        ])
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every image's activations at every token, each image run on its own.
fn brute_force(vit: &mut Vit, set: &ImageSet) -> Vec<(String, Option<usize>, Vec<Vec<f32>>)> {
    vit.neuron_tokens = Tokens::All;
    let norm = data::normalization(vit, data::Preset::Checkpoint);
    set.entries
        .iter()
        .map(|e| {
            let pixels = data::load_image(&e.path, vit, &norm).unwrap();
            (e.key.clone(), e.label, vit.clean_forward(&pixels).neurons)
        })
        .collect()
}

fn value(rank: Rank, vit: &Vit, layer: &[f32], n: usize) -> f32 {
    let f = vit.config.intermediate;
    let patches: Vec<f32> = vit
        .config
        .rows(Tokens::Patches)
        .map(|r| layer[r * f + n])
        .collect();
    match rank {
        Rank::Cls => layer[n],
        Rank::PatchMax => patches.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        Rank::PatchMean => patches.iter().sum::<f32>() / patches.len() as f32,
    }
}

#[test]
fn exemplars_heatmaps_and_class_means_equal_brute_force() {
    let dir = common::scratch("neurons-brute");
    let images = common::image_folder(&dir, &common::CIFAR10, 5);
    let (mut vit, set) = bundled_with(&images);
    let all = brute_force(&mut vit, &set);
    for rank in [Rank::Cls, Rank::PatchMax] {
        let out = dir.join(format!("{rank}.jsonl"));
        scan(&images, &out, &["--rank", rank.name()]);
        let got = records(&out);
        assert_eq!(got.len(), 5);
        for r in &got {
            let mut ranked: Vec<(f32, &str, usize)> = (all.iter().enumerate())
                .map(|(i, (key, _, acts))| {
                    (value(rank, &vit, &acts[r.layer], r.neuron), key.as_str(), i)
                })
                .collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
            let what = format!("{rank} {}:{}", r.layer, r.neuron);
            let want: Vec<&str> = ranked.iter().take(5).map(|x| x.1).collect();
            let have: Vec<&str> = r.top.iter().map(|e| e.image.as_str()).collect();
            assert_eq!(have, want, "{what}: exemplars");
            for (e, (v, _, i)) in r.top.iter().zip(&ranked) {
                assert!(
                    (e.activation - v).abs() <= 1e-5,
                    "{what}: {} {} vs {v}",
                    e.image,
                    e.activation
                );
                let f = vit.config.intermediate;
                let patches: Vec<f32> = (vit.config.rows(Tokens::Patches))
                    .map(|p| all[*i].2[r.layer][p * f + r.neuron])
                    .collect();
                let heat: Vec<f32> = e.heatmap.concat();
                assert_eq!(e.heatmap.len(), 8, "{what}: an 8x8 grid");
                for (h, p) in heat.iter().zip(&patches) {
                    assert!((h - p).abs() <= 1e-5, "{what}: heatmap of {}", e.image);
                }
                assert_eq!(e.label, all[*i].1);
            }
            for c in 0..10 {
                let of_class: Vec<f32> = (all.iter())
                    .filter(|x| x.1 == Some(c))
                    .map(|x| value(rank, &vit, &x.2[r.layer], r.neuron))
                    .collect();
                let mean = of_class.iter().sum::<f32>() / of_class.len() as f32;
                let got = r.class_mean[c].unwrap();
                assert!(
                    (got - mean).abs() <= 1e-5,
                    "{what}: class {c} mean {got} vs {mean}"
                );
                assert_eq!(r.class_count[c], 5);
            }
        }
    }
}

/// The scan ranks the three fixture inputs of every family fixture (every layout) as PyTorch's own
/// activations do (at CLS, and by the patch maximum), with their values.
#[test]
fn scan_ranks_as_pytorch_on_the_family_fixtures() {
    let fixtures = common::family_fixtures();
    for (fixture, on) in fixtures.iter().flat_map(|f| BOTH.map(|on| (f, on))) {
        let name = format!("{} on {on:?}", fixture.name);
        let mut vit = on.place(fixture.load());
        let reference = fixture.reference();
        let pixels = reference["pixel_values"].to_f32().unwrap();
        let acts = reference["ffn_activations"].to_f32().unwrap();
        let (t, f, layers) = (
            vit.config.tokens(),
            vit.config.intermediate,
            vit.config.layers,
        );
        let images = acts.len() / (layers * t * f);
        let neurons: Vec<Neuron> = Neuron::of_layers(&(0..layers).collect::<Vec<_>>(), f);
        for rank in [Rank::Cls, Rank::PatchMax] {
            // SigLIP has no CLS token (`neurons` refuses --rank cls there).
            if vit.config.rows(rank.tokens()).is_empty() {
                continue;
            }
            vit.neuron_tokens = rank.tokens();
            let pass = vit.activations(&pixels);
            let keys: Vec<String> = (0..images).map(|b| format!("image{b}")).collect();
            let seen: Vec<Seen> = (0..images)
                .map(|at| Seen {
                    at,
                    key: &keys[at],
                    label: None,
                })
                .collect();
            let mut scan = Scan::new(neurons.clone(), rank, 2, vit.config.classes);
            scan.add(&vit, &pass, &seen);
            for (k, n) in neurons.iter().enumerate() {
                let torch =
                    |b: usize, row: usize| acts[((b * layers + n.layer) * t + row) * f + n.neuron];
                let mut want: Vec<(f32, usize)> = (0..images)
                    .map(|b| match rank {
                        Rank::Cls => (torch(b, 0), b),
                        _ => (
                            vit.config
                                .rows(Tokens::Patches)
                                .map(|r| torch(b, r))
                                .fold(f32::MIN, f32::max),
                            b,
                        ),
                    })
                    .collect();
                want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let top = &scan.hits[k].hits;
                for (hit, (v, b)) in top.iter().zip(&want) {
                    let what = format!("{name} {rank} {n}");
                    assert!(
                        (hit.score - v).abs() <= 1e-5 * v.abs().max(1.0),
                        "{what}: {} vs {v}",
                        hit.score
                    );
                    // Near-ties may order either way within the tolerance.
                    if (want[0].0 - want[1].0).abs() > 1e-4 {
                        assert_eq!(hit.image, keys[*b], "{what}");
                        break;
                    }
                }
            }
        }
    }
}

/// The direct effect, computed here from the weights and an image's final stream:
/// the final LayerNorm with its scale frozen at that image, then the head.
#[test]
fn direct_effect_is_the_head_through_the_frozen_norm() {
    let dir = common::scratch("neurons-direct");
    let out = dir.join("n.jsonl");
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/images");
    scan(&images, &out, &[]);
    let (mut vit, set) = bundled_with(&images);
    let norm = data::normalization(&vit, data::Preset::Checkpoint);
    let (d, f) = (vit.config.hidden, vit.config.intermediate);
    vit.neuron_tokens = Tokens::All;
    for r in records(&out) {
        let w: Vec<f32> = (0..d)
            .map(|i| vit.weights.blocks[r.layer].fc2.w[i * f + r.neuron])
            .collect();
        let mut want = vec![0f32; 10];
        for e in &r.top {
            let entry = set.entries.iter().find(|x| x.key == e.image).unwrap();
            let pixels = data::load_image(&entry.path, &vit, &norm).unwrap();
            let pass = vit.activations(&pixels);
            let cls = &pass.output[..d];
            let mean = cls.iter().sum::<f32>() / d as f32;
            let var = cls.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / d as f32;
            let rstd = 1.0 / (var + vit.weights.norm.eps).sqrt();
            assert!((e.norm_scale.unwrap() - rstd).abs() <= 1e-5 * rstd);
            let wmean = w.iter().sum::<f32>() / d as f32;
            let y: Vec<f32> = (0..d)
                .map(|i| (w[i] - wmean) * rstd * vit.weights.norm.gamma[i])
                .collect();
            for (c, want) in want.iter_mut().enumerate() {
                let row = &vit.weights.head.as_ref().unwrap().w[c * d..(c + 1) * d];
                *want += row.iter().zip(&y).map(|(a, b)| a * b).sum::<f32>() / r.top.len() as f32;
            }
        }
        let got = &r.direct_effect.as_ref().unwrap().logits;
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "{}:{}: {got:?} vs {want:?}",
                r.layer,
                r.neuron
            );
        }
        let promoted = r.direct_effect.as_ref().unwrap().promotes[0].class;
        assert_eq!(promoted, neuronpath::numeric::argmax(&want));
    }
}

/// A scan stopped part-way resumes from its state and writes what one run writes;
/// a corrupt image is skipped and counted.
#[test]
fn a_stopped_scan_resumes_to_the_same_records() {
    let dir = common::scratch("neurons-resume");
    let images = common::image_folder(&dir, &["cat", "dog", "ship"], 8);
    std::fs::write(images.join("cat/9999.jpg"), b"not a jpeg").unwrap();
    let whole = dir.join("whole.jsonl");
    scan(&images, &whole, &[]);
    let (mut vit, set) = bundled_with(&images);
    let norm = data::normalization(&vit, data::Preset::Checkpoint);
    let parted = dir.join("parted.jsonl");
    let model_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/vit-cifar10");
    let job = neuronpath::roles::NeuronScan {
        set: &set,
        norm: &norm,
        neurons: NEURONS
            .split(',')
            .map(|n| n.parse().unwrap())
            .collect::<Vec<Neuron>>(),
        options: neuronpath::roles::Options {
            rank: Rank::Cls,
            top: 5,
            batch: 7,
            preprocess: data::Preset::Checkpoint,
        },
        model: (
            model_path.display().to_string(),
            model::fingerprint(&model_path, &vit).unwrap(),
        ),
    };
    let mut sorted = job.neurons.clone();
    sorted.sort();
    let job = neuronpath::roles::NeuronScan {
        neurons: sorted,
        ..job
    };
    let state = neuronpath::roles::run::state_file(&parted);
    let stop = StopAfter(std::sync::atomic::AtomicUsize::new(0), 2);
    let (_, finished) = job.scan(&mut vit, Some(&state), &stop).unwrap();
    assert!(!finished && state.exists());
    // Another --top is refused, naming it, with the state untouched.
    let before = std::fs::read(&state).unwrap();
    let refused = common::neuronpath()
        .args(["neurons", "--neurons", NEURONS, "--top", "4"])
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&parted)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("another top"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(std::fs::read(&state).unwrap(), before);
    // The same command resumes from the state and writes what one run wrote.
    scan(&images, &parted, &[]);
    assert!(!state.exists());
    assert_eq!(
        std::fs::read_to_string(&whole).unwrap(),
        std::fs::read_to_string(&parted).unwrap()
    );
    let got = records(&whole);
    assert_eq!((got[0].images, got[0].failed), (24, 1));
    // A pass of no images would never get through them: refused, not a hang.
    let options = neuronpath::roles::Options {
        batch: 0,
        ..job.options.clone()
    };
    let empty = neuronpath::roles::NeuronScan { options, ..job };
    let Err(refused) = empty.scan(&mut vit, None, &neuronpath::progress::Silent) else {
        panic!("a batch of 0 is refused");
    };
    assert!(refused.to_string().contains("batch 0"), "{refused}");
}

/// Stops a scan after `.1` batches.
struct StopAfter(std::sync::atomic::AtomicUsize, usize);

impl neuronpath::progress::Progress for StopAfter {
    fn advance(&self, _n: usize) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn stopped(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst) >= self.1
    }
}

/// Descriptions of disjoint parts of a dataset (shards) merge into exactly the
/// description of the whole: the same exemplars, sums, means and direct effects.
#[test]
fn descriptions_of_parts_merge_into_the_whole() {
    let dir = common::scratch("neurons-merge");
    let images = common::image_folder(&dir, &["bird", "cat", "dog", "frog"], 7);
    let (mut vit, whole) = bundled_with(&images);
    let norm = data::normalization(&vit, data::Preset::Checkpoint);
    let mut describe = |set: &ImageSet, name: &str| -> Vec<NeuronRecord> {
        let job = neuronpath::roles::NeuronScan {
            set,
            norm: &norm,
            neurons: Neuron::of_layers(&[1, 4], 512),
            options: neuronpath::roles::Options {
                rank: Rank::PatchMax,
                top: 9,
                batch: 5,
                preprocess: data::Preset::Checkpoint,
            },
            model: ("m".into(), "f".into()),
        };
        let state = dir.join(name);
        let (scan, finished) = job
            .scan(&mut vit, Some(&state), &neuronpath::progress::Silent)
            .unwrap();
        assert!(finished);
        job.records(&mut vit, &scan, &neuronpath::progress::Silent)
    };
    let want = describe(&whole, "whole");
    let mut merged: Option<Vec<NeuronRecord>> = None;
    for shard in 0..3 {
        let mut part = whole.clone();
        part.entries = whole
            .entries
            .iter()
            .skip(shard)
            .step_by(3)
            .cloned()
            .collect();
        let got = describe(&part, &format!("part{shard}"));
        merged = Some(match merged {
            None => got,
            Some(mut acc) => {
                for (a, b) in acc.iter_mut().zip(got) {
                    a.merge(b);
                }
                acc
            }
        });
    }
    let merged = merged.unwrap();
    assert_eq!(merged.len(), 1024);
    for (m, w) in merged.iter().zip(&want) {
        assert_eq!(
            serde_json::to_string(m).unwrap(),
            serde_json::to_string(w).unwrap(),
            "{}:{}",
            w.layer,
            w.neuron
        );
    }
}
