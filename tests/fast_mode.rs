//! Fast mode against the converged integral: Gauss-Legendre paths compared with the
//! reference code's m = 256 paths on its 100 convergence images. The reference's own
//! m = 20 finds the m = 256 path on 93/100 images; fast mode must do at least as well.

mod common;
use neuronpath::attribution::{Attributor, ImageContext, Integration, ScoreForm};
use neuronpath::model::{self, LoadOptions};

#[test]
fn gauss_legendre_6_agrees_with_the_converged_paths_as_often_as_riemann_20() {
    neuronpath::model::reuse_freed_buffers();
    let vit = model::load(
        &common::shared("fixtures/vit-cifar10"),
        &LoadOptions::default(),
    )
    .unwrap();
    let records = common::reference_records("vit-cifar10-convergence-m256.json");
    assert_eq!(records.len(), 100);
    let attributor = Attributor {
        vit: &vit,
        rule: Integration::GaussLegendre(6),
        form: ScoreForm::Reference,
    };
    let mut same = 0;
    for chunk in records.chunks(20) {
        let contexts: Vec<ImageContext> = common::contexts(&vit, chunk);
        let paths = attributor.locate(&contexts.iter().collect::<Vec<_>>());
        for (r, got) in chunk.iter().zip(&paths) {
            same += usize::from(*got == common::indices(&r["ja"]));
        }
    }
    eprintln!(
        "gauss-legendre 6 matches the m = 256 path on {same}/100 images (reference m = 20: 93/100)"
    );
    assert!(same >= 93, "only {same}/100 converged paths");
}
