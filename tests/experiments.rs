//! The experiments against values worked out here by hand or by another route:
//! statistics of hand-made paths, the manipulation summary of hand-made outcomes,
//! an edit against branching from the clean pass, and the pruning plan and split.

mod common;
use common::executors::{Executor, BOTH};
use neuronpath::attribution::{ImageContext, Method, Rule, ScoreForm, Target};
use neuronpath::data::ImageSet;
use neuronpath::data::Preset;
use neuronpath::experiments::manipulate::{summarize, ManipulationRecord, Op};
use neuronpath::experiments::prune::{self, PruneSettings};
use neuronpath::experiments::stats::path_stats;
use neuronpath::experiments::{edited_outcomes, Outcome};
use neuronpath::model::{self, Action, Intervention, LoadOptions};
use neuronpath::record::PathRecord;

fn record(image: &str, class: usize, path: &[usize]) -> PathRecord {
    PathRecord {
        score: path[0] as f64,
        image: image.into(),
        label: Some(class),
        label_name: Some(format!("class{class}")),
        method: Method::Jas,
        path: path.to_vec().into(),
        beam: 1,
        rank: 0,
        neurons: 8,
        classes: None,
        target: class,
        target_source: Target::Label,
        target_prob: 0.5,
        predicted: class,
        predicted_name: None,
        predicted_prob: 0.5,
        activation: vec![],
        gradient: vec![],
        contribution: vec![],
        integration: Rule::LeftRiemann,
        steps: 20,
        score_form: ScoreForm::Reference,
        model: "m".into(),
        preprocess: Preset::Checkpoint,
        sites: vec![],
        compat: Default::default(),
        model_fingerprint: None,
        image_fingerprint: None,
        seed: None,
    }
}

#[test]
fn class_statistics_of_hand_made_paths() {
    let records = vec![
        record("a0", 0, &[1, 2]),
        record("a1", 0, &[1, 3]),
        record("a2", 0, &[4, 2]),
        record("a3", 0, &[1, 2]),
        record("b0", 1, &[1, 5]),
        record("b1", 1, &[6, 5]),
        record("c0", 2, &[7, 7]),
    ];
    let stats = path_stats(&records, Method::Jas).unwrap();
    assert_eq!(
        (stats.layers, stats.neurons, stats.classes.len()),
        (2, 8, 3)
    );
    let a = &stats.classes[0];
    assert_eq!(a.images, 4);
    assert_eq!(a.frequency[0], vec![(1, 3), (4, 1)]);
    assert_eq!(a.frequency[1], vec![(2, 3), (3, 1)]);
    assert_eq!(a.class_path, vec![1, 2]);
    assert_eq!(a.concentration, vec![0.75, 0.75]);
    assert_eq!(a.top(1), vec![vec![1], vec![2]]);
    // Frequency vectors: a = {L0: 1->3, 4->1; L1: 2->3, 3->1}, b = {L0: 1->1, 6->1; L1: 5->2},
    // c = {L0: 7->1; L1: 7->1}. cos(a, b) = 3 / (sqrt(20) sqrt(6)); c shares nothing.
    let want_ab = 3.0 / (20f64.sqrt() * 6f64.sqrt());
    assert!((stats.similarity[0][1] - want_ab).abs() < 1e-12);
    assert!((stats.similarity[0][0] - 1.0).abs() < 1e-12);
    assert_eq!(stats.similarity[0][2], 0.0);
    assert_eq!(a.most_similar, Some(1));
    assert_eq!(a.least_similar, Some(2));
    assert_eq!(
        stats.classes[2].most_similar,
        Some(0),
        "ties go to the first class"
    );
    assert_eq!(a.name.as_deref(), Some("class0"));
}

#[test]
fn statistics_refuse_mixed_models() {
    let mut other = record("x", 0, &[1, 2, 3]);
    other.neurons = 8;
    let err = path_stats(&[record("a", 0, &[1, 2]), other], Method::Jas).unwrap_err();
    assert!(err.to_string().contains("mixes models"), "{err}");
    assert!(path_stats(&[record("a", 0, &[1, 2])], Method::Ig).is_err());
}

fn manipulation(op: Op, before: (f32, usize), after: (f32, usize)) -> ManipulationRecord {
    ManipulationRecord {
        image: format!("{}", before.0),
        method: Method::Jas,
        op,
        label: Some(3),
        target: 3,
        prob_before: before.0,
        prob_after: after.0,
        predicted_before: before.1,
        predicted_after: after.1,
        model_fingerprint: None,
        path_fingerprint: None,
    }
}

#[test]
fn manipulation_summary_of_hand_made_outcomes() {
    let records = vec![
        manipulation(Op::Remove, (0.8, 3), (0.2, 1)),
        manipulation(Op::Remove, (0.5, 3), (0.5, 3)),
        manipulation(Op::Remove, (0.4, 2), (0.1, 2)),
        manipulation(Op::Enhance, (0.5, 3), (0.75, 3)),
        // No ratio: left out of the probability deviation, counted for accuracy.
        manipulation(Op::Enhance, (0.0, 1), (0.0, 3)),
    ];
    let summary = summarize(&records);
    assert_eq!(summary.len(), 2);
    let remove = &summary[0];
    assert_eq!((remove.op, remove.images), (Op::Remove, 3));
    // (0.2/0.8 - 1 + 0.5/0.5 - 1 + 0.1/0.4 - 1) / 3 = (-0.75 + 0 - 0.75) / 3
    assert!((remove.prob_deviation - (-0.5)).abs() < 1e-6);
    assert!((remove.accuracy_before - 2.0 / 3.0).abs() < 1e-12);
    assert!((remove.accuracy_after - 1.0 / 3.0).abs() < 1e-12);
    assert!((remove.accuracy_deviation - (-1.0 / 3.0)).abs() < 1e-12);
    assert!((summary[1].prob_deviation - 0.5).abs() < 1e-6);
    assert_eq!(summary[1].images, 2);
    assert!((summary[1].accuracy_deviation - 0.5).abs() < 1e-12);
}

#[test]
fn an_edit_at_one_layer_equals_branching_from_the_clean_pass() {
    for on in BOTH {
        an_edit_at_one_layer_equals_branching_from_the_clean_pass_on(on);
    }
}

fn an_edit_at_one_layer_equals_branching_from_the_clean_pass_on(on: Executor) {
    // `edited_outcomes` runs the whole model with the row edited in place; here the
    // edited row is formed by hand and the model is run from the block above.
    let vit = on.place(
        model::load(
            &common::shared("fixtures/vit-cifar10"),
            &LoadOptions::default(),
        )
        .unwrap(),
    );
    let records = common::reference_records("vit-cifar10-dev.json");
    let image: &ImageContext = &common::contexts(&vit, &records[..1])[0];
    let layers = vit.config.layers;
    for layer in [0, layers / 2, layers - 1] {
        for op in [Op::Remove, Op::Enhance] {
            let neurons = [3usize, 100, 511];
            let mut edit = vec![Vec::new(); layers];
            edit[layer] = neurons.iter().map(|&n| (n, op.factor())).collect();
            let got = edited_outcomes(&vit, image, &[&edit])[0];
            let mut row = image.clean.neurons[layer].clone();
            for n in neurons {
                row[n] *= op.factor();
            }
            let replace = [Intervention {
                site: vit.neuron_site(layer),
                action: Action::Replace(&row),
            }];
            let branched = vit.branched_gradients(&[&image.clean], &replace, &[image.target]);
            let want = branched.probability[0];
            assert!(
                (got.prob - want).abs() < 1e-5,
                "layer {layer} {op:?}: {} vs {want}",
                got.prob
            );
        }
    }
    // No edit at all: the clean prediction.
    let none = edited_outcomes(&vit, image, &[&vec![Vec::new(); layers]])[0];
    let clean = Outcome::clean(&vit, image);
    assert!((none.prob - clean.prob).abs() < 1e-6 && none.predicted == clean.predicted);
}

#[test]
fn pruning_keeps_the_top_neurons_and_prunes_the_requested_share() {
    let records: Vec<PathRecord> = (0..6)
        .map(|i| record(&format!("a{i}"), 0, &[i % 2, 5]))
        .chain((0..3).map(|i| record(&format!("b{i}"), 1, &[7, i])))
        .collect();
    let stats = path_stats(&records, Method::Jas).unwrap();
    for fraction in [1.0, 0.5] {
        let plans = prune::plan(
            &stats,
            PruneSettings {
                top_k: 2,
                fraction,
                seed: 3,
            },
        );
        let a = &plans[0];
        assert_eq!(a.keep, vec![vec![0, 1], vec![5]]);
        for (l, keep) in a.keep.iter().enumerate() {
            let pruned: Vec<usize> = a.pruned[l].iter().map(|&(n, _)| n).collect();
            assert!(a.pruned[l].iter().all(|&(_, f)| f == 0.0));
            assert!(pruned.iter().all(|n| !keep.contains(n) && *n < 8));
            let others = 8 - keep.len();
            assert_eq!(pruned.len(), (others as f64 * fraction).round() as usize);
            let control: Vec<usize> = a.control_pruned[l].iter().map(|&(n, _)| n).collect();
            assert_eq!(a.control_keep[l].len(), keep.len());
            assert!(control.iter().all(|n| !a.control_keep[l].contains(n)));
            assert_eq!(control.len(), pruned.len());
        }
    }
}

#[test]
fn the_holdout_split_is_disjoint_and_per_class() {
    let labels = neuronpath::data::labels::Labels {
        classes: 10,
        ..Default::default()
    };
    let set = ImageSet::open(&common::shared("data/cifar10-test"), &labels).unwrap();
    let split = prune::split(&set, 0.3);
    assert_eq!(split.evaluate.len(), 3000);
    assert_eq!(split.build.len(), 7000);
    assert!(split.evaluate.iter().all(|e| !split.build.contains(&e.key)));
    assert!(split.evaluate.iter().any(|e| e.key == "cat/0999.jpg"));
    assert!(split.build.contains("cat/0000.jpg"));
    let in_sample = prune::split(&set, 0.0);
    assert_eq!(in_sample.evaluate.len(), 10000);
    assert_eq!(in_sample.build.len(), 10000);
}
