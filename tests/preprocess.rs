//! Pixels against PIL: JPEG decoding of the dev images, bilinear resizes, normalisation.

mod common;
use neuronpath::data::{decode, resize, to_tensor};
use neuronpath::model::npy::NpyData;
use neuronpath::model::Normalization;

#[test]
fn jpeg_decoding_is_bit_identical_to_pil() {
    let npz = common::npz("reference/preprocess/cifar10-dev-pixels.npz");
    let NpyData::U8(pixels) = &npz["pixels"].data else {
        panic!("pixels not u8")
    };
    let NpyData::Str(files) = &npz["files"].data else {
        panic!("files not strings")
    };
    assert_eq!(files.len(), 50);
    for (i, file) in files.iter().enumerate() {
        let img = decode::open(&common::shared(&format!("data/cifar10-test/{file}"))).unwrap();
        assert_eq!((img.width, img.height), (32, 32));
        let want = &pixels[i * 32 * 32 * 3..(i + 1) * 32 * 32 * 3];
        let differing = img.pixels.iter().zip(want).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{file}: {differing} values differ from PIL");
    }
}

#[test]
fn bilinear_resize_and_normalisation_match_pil_and_torchvision() {
    let npz = common::npz("reference/preprocess/resize-224.npz");
    let imagenet = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        geometry: Default::default(),
        source: String::new(),
    };
    for name in ["smooth-400x300", "cat-32x32"] {
        let key = name.replace('-', "_");
        let img =
            decode::open(&common::shared(&format!("reference/preprocess/{name}.png"))).unwrap();
        let resized = resize::resize_bilinear(&img, 224, 224);
        let NpyData::U8(want) = &npz[&format!("{key}_resized_u8")].data else {
            panic!()
        };
        let off = resized
            .pixels
            .iter()
            .zip(want)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(off, 0, "{name}: {off} resized values differ from PIL");
        let tensor = to_tensor(&img, 224, &imagenet).unwrap();
        let want = npz[&key].to_f32().unwrap();
        let worst = tensor
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "{name}: normalised tensor off by {worst}");
    }
}

#[test]
fn corrupt_inputs_are_errors_that_name_the_problem() {
    let dir = common::scratch("corrupt-decode");
    let good = std::fs::read(common::shared("data/cifar10-test/cat/0000.jpg")).unwrap();
    let truncated = dir.join("truncated.jpg");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let text = dir.join("text.png");
    std::fs::write(&text, "hello, not an image").unwrap();
    let err = format!("{:#}", decode::open(&truncated).unwrap_err());
    assert!(
        err.contains("truncated.jpg") && err.contains("JPEG"),
        "{err}"
    );
    let err = format!("{:#}", decode::open(&text).unwrap_err());
    assert!(
        err.contains("text.png") && err.contains("neither JPEG nor PNG"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bicubic_resize_is_bit_identical_to_pil() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for (name, width, height) in [("smooth-400x300", 137, 101), ("cat-32x32", 80, 80)] {
        let source =
            decode::open(&common::shared(&format!("reference/preprocess/{name}.png"))).unwrap();
        let want =
            decode::open(&here.join(format!("{name}-bicubic-{width}x{height}.png"))).unwrap();
        let got = resize::resize(&source, width, height, neuronpath::model::Filter::Bicubic);
        assert_eq!((got.width, got.height), (want.width, want.height));
        let differ = got
            .pixels
            .iter()
            .zip(&want.pixels)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differ, 0,
            "{name}: {differ} bytes differ from PIL's bicubic resize"
        );
    }
}

#[test]
fn shortest_edge_resize_and_centre_crop_match_pil() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let source = decode::open(&common::shared("reference/preprocess/smooth-400x300.png")).unwrap();
    let want = decode::open(&here.join("smooth-400x300-edge40-crop32.png")).unwrap();
    let identity = Normalization {
        mean: [0.0; 3],
        std: [1.0; 3],
        geometry: neuronpath::model::Geometry {
            size: None,
            shortest_edge: Some(40),
            crop: true,
            keep_size: false,
            filter: neuronpath::model::Filter::Bicubic,
        },
        source: String::new(),
    };
    let got = to_tensor(&source, 32, &identity).unwrap();
    let plane = 32 * 32;
    for (i, px) in want.pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            assert_eq!(
                got[c * plane + i],
                px[c] as f32 / 255.0,
                "pixel {i} channel {c}"
            );
        }
    }
}
