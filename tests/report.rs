//! `neuronpath report` end to end: a page built from paths found on real CIFAR-10
//! images, opened in headless Chromium with the network off, checked for structure
//! and for having no outside references; and the size and opening time of a page
//! of a thousand images.

mod common;
use common::{image_folder, neuronpath, scratch};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// One browser at a time: they are timed, and the machine has two cores.
static BROWSER: Mutex<()> = Mutex::new(());

/// Runs headless Chromium on `page` with `args`, with no network: in a namespace
/// of its own where one can be made (root, as in CI), else through a dead proxy.
fn chromium(page: &Path, args: &[&str]) -> (Output, Duration) {
    let _one_at_a_time = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let profile = scratch("chromium-profile");
    let offline_namespace = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
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
        Err(e) => panic!("cannot run chromium ({e}): install Debian's `chromium` package (apt-get install chromium); .ci/run does"),
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
        "chromium not found: install Debian's `chromium` package (apt-get install chromium); .ci/run does"
    );
}

/// `paths` on `images`, then `report`; returns the page's path.
fn paths_and_report(dir: &Path, images: &Path, paths_args: &[&str]) -> PathBuf {
    let paths = dir.join("paths.jsonl");
    let out = neuronpath()
        .arg("paths")
        .args(paths_args)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = dir.join("report.html");
    let out = neuronpath()
        .args(["report", "--paths"])
        .arg(&paths)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(&page)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("report.html"),
        "does not say where the page is: {stderr}"
    );
    page
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
    neuronpath::record::read_records(paths)
        .unwrap()
        .into_iter()
        .map(|r| r.image)
        .collect()
}

/// The `data-image` of every path figure in the DOM, checking there is one each.
fn path_figures(dom: &str) -> BTreeSet<String> {
    let figures: Vec<&str> = dom
        .split("<figure ")
        .skip(1)
        .filter(|f| f.starts_with("class=\"path-figure\""))
        .collect();
    let images: BTreeSet<String> = figures
        .iter()
        .map(|f| attribute_values(f, "data-image")[0].to_string())
        .collect();
    assert_eq!(
        images.len(),
        figures.len(),
        "an image has more than one path figure"
    );
    images
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
fn page_shows_every_image_and_works_offline() {
    require_chromium();
    let dir = scratch("report-page");
    let images = image_folder(&dir, &CLASSES, 2);
    let page = paths_and_report(&dir, &images, &["--steps", "4"]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);

    let (out, _) = chromium(&page, &["--dump-dom"]);
    let dom = String::from_utf8(out.stdout).unwrap();
    assert_eq!(path_figures(&dom), images_in(&dir.join("paths.jsonl")));
    assert_eq!(path_figures(&dom).len(), 20);
    assert!(
        dom.contains("data-figure=\"jas\""),
        "no JAS comparison of the methods"
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
    require_chromium();
    let dir = scratch("report-thousand");
    let images = image_folder(&dir, &CLASSES, 100);
    // One integration step: the page's size does not depend on the paths' accuracy.
    let page = paths_and_report(&dir, &images, &["--steps", "1"]);
    let bytes = std::fs::metadata(&page).unwrap().len();
    assert!(bytes < 20_000_000, "{bytes} bytes for 1000 images");

    // Opening = time to the loaded DOM, less the browser's own start (a blank page).
    let fastest = |page: &Path| {
        (0..2)
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
    assert_eq!(
        path_figures(&String::from_utf8(out.stdout).unwrap()).len(),
        1000
    );
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
        (&empty, "no path records"),
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
