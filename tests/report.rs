//! `neuronpath report` end to end: a page built from the paths, manipulation and
//! statistics of real CIFAR-10 images, opened in headless Chromium with the network
//! off, checked for structure and for having no outside references; and the size
//! and opening time of a page of a thousand images.

mod common;
use common::{image_folder, neuronpath, scratch};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::CIFAR10 as CLASSES;

/// One test at a time: the page is timed, and the machine has two cores.
static MACHINE: Mutex<()> = Mutex::new(());

/// Runs headless Chromium on `page` with `args`, with no network: in a namespace
/// of its own where one can be made (root, as in CI), else through a dead proxy.
fn chromium(page: &Path, args: &[&str]) -> (Output, Duration) {
    static OFFLINE_NAMESPACE: OnceLock<bool> = OnceLock::new();
    let profile = scratch("chromium-profile");
    let offline_namespace = *OFFLINE_NAMESPACE.get_or_init(|| {
        Command::new("unshare")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success())
    });
    let mut command = if offline_namespace {
        let mut c = Command::new("unshare");
        c.args(["-n", "chromium"]);
        c
    } else {
        let mut c = Command::new("chromium");
        c.arg("--proxy-server=127.0.0.1:9");
        c
    };
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()));
    let start = Instant::now();
    let output = match command.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run chromium ({e}): install Debian's `chromium` package (apt-get install chromium); scripts/test does"),
    };
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "chromium failed on {}: {}",
        page.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, elapsed)
}

fn require_chromium() {
    let found = Command::new("chromium").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "chromium not found: install Debian's `chromium` package (apt-get install chromium); scripts/test does"
    );
}

/// Runs `neuronpath args..`, failing the test with its error output if it fails.
fn run(args: &[&std::ffi::OsStr]) -> String {
    let out = neuronpath().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "neuronpath {args:?}: {stderr}");
    stderr
}

/// `paths` (all methods) on `images` with `steps`, `manipulate` and `stats`, then
/// `report` of all three; returns the page's path.
fn results_and_report(dir: &Path, images: &Path, steps: &str) -> PathBuf {
    let file = |name: &str| dir.join(name).into_os_string();
    let images = images.as_os_str();
    let os = std::ffi::OsStr::new;
    run(&[
        os("paths"),
        os("--steps"),
        os(steps),
        os("--images"),
        images,
        os("--out"),
        &file("paths.jsonl"),
    ]);
    run(&[
        os("manipulate"),
        os("--images"),
        images,
        os("--paths"),
        &file("paths.jsonl"),
        os("--out"),
        &file("manipulate.jsonl"),
    ]);
    run(&[
        os("stats"),
        os("--paths"),
        &file("paths.jsonl"),
        os("--out"),
        &file("stats.json"),
    ]);
    let stderr = run(&[
        os("report"),
        os("--paths"),
        &file("paths.jsonl"),
        os("--manipulate"),
        &file("manipulate.jsonl"),
        os("--stats"),
        &file("stats.json"),
        os("--images"),
        images,
        os("--out"),
        &file("report.html"),
    ]);
    assert!(
        stderr.contains("report.html"),
        "does not say where the page is: {stderr}"
    );
    dir.join("report.html")
}

/// The page of `per_class` CIFAR-10 test images of every class, paths found with
/// `steps`; the guard keeps other tests off the machine until it is dropped.
fn cifar_report(
    name: &str,
    per_class: usize,
    steps: &str,
) -> (PathBuf, PathBuf, std::sync::MutexGuard<'static, ()>) {
    require_chromium();
    let alone = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch(name);
    let images = image_folder(&dir, &CLASSES, per_class);
    let page = results_and_report(&dir, &images, steps);
    (dir, page, alone)
}

/// The values of attribute `name` (double-quoted, as serialised) in `html`.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let key = format!(" {name}=\"");
    html.match_indices(&key)
        .map(|(i, _)| {
            let rest = &html[i + key.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

/// Nothing on the page is fetched from anywhere: no script, no stylesheet or font
/// link, and every address is a `data:` URI or a reference within the page.
fn assert_self_contained(html: &str) {
    let lower = html.to_lowercase();
    for banned in ["http:", "https:", "<script", "<link", "@import", "<iframe"] {
        assert!(!lower.contains(banned), "the page contains {banned}");
    }
    for attr in ["src", "href", "xlink:href", "srcset", "action"] {
        for value in attribute_values(html, attr) {
            assert!(
                value.starts_with("data:") || value.starts_with('#'),
                "{attr}=\"{value}\" points outside the page"
            );
        }
    }
    for (i, _) in lower.match_indices("url(") {
        let rest = lower[i + 4..].trim_start_matches(['"', '\'']);
        assert!(
            rest.starts_with("data:") || rest.starts_with('#'),
            "url({rest:.40}..)"
        );
    }
}

/// The images the paths file holds, by key.
fn images_in(paths: &Path) -> BTreeSet<String> {
    neuronpath::record::read_records::<neuronpath::record::PathRecord>(paths)
        .unwrap()
        .into_iter()
        .map(|r| r.image)
        .collect()
}

/// The `attribute` of every figure of class `class` in the DOM, checking that no
/// two figures share one.
fn figures(dom: &str, class: &str, attribute: &str) -> BTreeSet<String> {
    let opening = format!("class=\"{class}\"");
    let figures: Vec<&str> = dom
        .split("<figure ")
        .skip(1)
        .filter(|f| f.starts_with(&opening))
        .collect();
    let keys: BTreeSet<String> = figures
        .iter()
        .map(|f| attribute_values(f, attribute)[0].to_string())
        .collect();
    assert_eq!(
        keys.len(),
        figures.len(),
        "two {class} figures of one {attribute}"
    );
    keys
}

/// A screenshot that shows something: a PNG of the asked size, mostly page
/// background but with many colours (figures, thumbnails, text).
fn assert_screenshot_shows_the_page(png_path: &Path, size: (u32, u32)) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), size);
    let channels = info.color_type.samples();
    let colours: BTreeSet<&[u8]> = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| &p[..3])
        .collect();
    assert!(
        colours.len() > 200,
        "a near-blank screenshot: {} colours",
        colours.len()
    );
}

#[test]
fn page_shows_every_image_class_and_method_offline() {
    let (dir, page, _alone) = cifar_report("report-page", 2, "4");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);

    let (out, _) = chromium(&page, &["--dump-dom"]);
    let dom = String::from_utf8(out.stdout).unwrap();
    let images_on_page = figures(&dom, "path-figure", "data-image");
    assert_eq!(images_on_page, images_in(&dir.join("paths.jsonl")));
    assert_eq!(images_on_page.len(), 20);
    let classes: BTreeSet<String> = (0..CLASSES.len()).map(|c| c.to_string()).collect();
    assert_eq!(figures(&dom, "class-map", "data-class"), classes);
    let method_figures = figures(&dom, "method-figure", "data-figure");
    for name in [
        "jas",
        "probability-remove",
        "accuracy-remove",
        "probability-enhance",
        "accuracy-enhance",
    ] {
        assert!(
            method_figures.contains(name),
            "no {name} figure among {method_figures:?}"
        );
    }
    // Every image card has a thumbnail and a row per method with both operations.
    assert_eq!(dom.matches("<img class=\"thumb\"").count(), 20);
    assert_eq!(
        dom.matches("<tr><td><span class=\"swatch\"").count(),
        20 * 5 + 5
    );

    let shot = dir.join("shot.png");
    chromium(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
    );
    assert_screenshot_shows_the_page(&shot, (1280, 1600));
}

#[test]
fn a_thousand_images_stay_under_20_mb_and_open_in_3_s() {
    // One integration step: the page's size does not depend on the paths' accuracy.
    let (dir, page, _alone) = cifar_report("report-thousand", 100, "1");
    let bytes = std::fs::metadata(&page).unwrap().len();
    assert!(bytes < 20_000_000, "{bytes} bytes for 1000 images");

    // Opening = time to the loaded DOM, less the browser's own start (a blank page).
    let fastest = |page: &Path| {
        (0..3)
            .map(|_| chromium(page, &["--dump-dom"]).1)
            .min()
            .unwrap()
    };
    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><title>blank</title>").unwrap();
    let start_up = fastest(&blank);
    let total = fastest(&page);
    let opening = total.saturating_sub(start_up);
    eprintln!(
        "1000 images: {:.1} MB, chromium {total:.2?} ({start_up:.2?} of it starting up)",
        bytes as f64 / 1e6
    );
    assert!(
        opening < Duration::from_secs(3),
        "the page took {opening:.2?} to open"
    );
    let (out, _) = chromium(&page, &["--dump-dom"]);
    let dom = String::from_utf8(out.stdout).unwrap();
    assert_eq!(figures(&dom, "path-figure", "data-image").len(), 1000);
    assert_eq!(figures(&dom, "class-map", "data-class").len(), 10);
}

#[test]
fn demo_makes_the_page_of_the_bundled_images_and_says_where() {
    let _alone = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("report-demo");
    let out = neuronpath()
        .args(["demo", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let page = std::fs::canonicalize(dir.join("report.html")).unwrap();
    assert!(
        stderr.contains(&format!("open {}", page.display())),
        "does not say where the page is: {stderr}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    let bundled = images_in(&dir.join("paths.jsonl"));
    assert_eq!(bundled.len(), 20);
    assert_eq!(figures(&html, "path-figure", "data-image"), bundled);
    assert_eq!(figures(&html, "class-map", "data-class").len(), 10);
    assert!(figures(&html, "method-figure", "data-figure").contains("accuracy-remove"));

    // A neuron card per path neuron, in the DOM as Chromium reads it, each with its
    // exemplars' thumbnails and heatmaps; the tables' neuron links all land on one.
    let (out, _) = chromium(&page, &["--dump-dom"]);
    let dom = String::from_utf8(out.stdout).unwrap();
    let records = neuronpath::record::read_records::<neuronpath::record::PathRecord>(
        &dir.join("paths.jsonl"),
    )
    .unwrap();
    let path_neurons: BTreeSet<String> = records
        .iter()
        .flat_map(|r| r.path.neurons())
        .map(|(l, n)| format!("neuron-{l}-{n}"))
        .collect();
    let cards = figures(&dom, "neuron-card", "id");
    assert_eq!(cards, path_neurons);
    assert_eq!(dom.matches("class=\"heat\"").count(), 8 * cards.len());
    assert_eq!(
        dom.matches("class=\"thumb shared x").count(),
        8 * cards.len()
    );
    let links: BTreeSet<String> = attribute_values(&dom, "href")
        .into_iter()
        .filter_map(|h| h.strip_prefix("#neuron-").map(|n| format!("neuron-{n}")))
        .collect();
    assert_eq!(
        links, path_neurons,
        "every path neuron linked, and only to a card"
    );
    let shot = dir.join("neurons.png");
    let only_neurons = dir.join("neurons.html");
    std::fs::write(
        &only_neurons,
        html.replace(
            "</head>",
            "<style>#methods,#classes,#images{display:none}</style></head>",
        ),
    )
    .unwrap();
    chromium(
        &only_neurons,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
    );
    assert_screenshot_shows_the_page(&shot, (1280, 1600));
}

#[test]
fn unreadable_paths_files_fail_naming_the_file() {
    let dir = scratch("report-bad-input");
    let missing = dir.join("missing.jsonl");
    let garbled = dir.join("garbled.jsonl");
    std::fs::write(&garbled, "{\"image\": \"cat/0000.jpg\"}\n").unwrap();
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    for (file, problem) in [
        (&missing, "cannot read"),
        (&garbled, "line 1: not a path record"),
        (&empty, "no records"),
    ] {
        let out = neuronpath()
            .args(["report", "--paths"])
            .arg(file)
            .arg("--out")
            .arg(dir.join("r.html"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: accepted", file.display());
        assert!(
            stderr.contains(&*file.display().to_string()) && stderr.contains(problem),
            "{stderr}"
        );
    }
    assert!(!dir.join("r.html").exists());
}
