//! Sharded runs (`--shard I/N`) merged into one run's file, killed shards resumed,
//! and the merge's refusals. Shards run as parallel processes of the CLI.

mod common;
use common::lines_written;
use common::neuronpath;
use common::sorted_lines;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Quick settings, the same for every run here.
const PATHS: [&str; 6] = [
    "paths",
    "--method",
    "jas,activation",
    "--steps",
    "4",
    "--threads",
];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neuronpath-shards-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `command` writing to `out`, as shard `shard` when given.
fn writing(mut command: Command, out: &Path, shard: Option<&str>) -> Command {
    command.arg("--out").arg(out).stderr(Stdio::piped());
    if let Some(shard) = shard {
        command.args(["--shard", shard]);
    }
    command
}

fn paths(out: &Path, shard: Option<&str>) -> Command {
    let mut cmd = neuronpath();
    cmd.args(PATHS).arg("1");
    writing(cmd, out, shard)
}

fn manipulate(paths: &Path, out: &Path, shard: Option<&str>) -> Command {
    let mut cmd = neuronpath();
    cmd.args(["manipulate", "--threads", "1", "--paths"])
        .arg(paths)
        .stdout(Stdio::null());
    writing(cmd, out, shard)
}

/// Waits for `child`; panics with its stderr when it failed.
fn succeed(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `merge --out out files...`: its success and stderr.
fn merge(out: &Path, files: &[PathBuf]) -> (bool, String) {
    let result = neuronpath()
        .arg("merge")
        .arg("--out")
        .arg(out)
        .args(files)
        .output()
        .unwrap();
    (
        result.status.success(),
        String::from_utf8_lossy(&result.stderr).into_owned(),
    )
}

/// Runs `n` shards of `command` side by side into `dir/<name>-I.jsonl`.
fn run_shards(
    dir: &Path,
    name: &str,
    n: usize,
    command: impl Fn(&Path, &str) -> Command,
) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = (0..n)
        .map(|i| dir.join(format!("{name}-{i}.jsonl")))
        .collect();
    let children: Vec<Child> = files
        .iter()
        .enumerate()
        .map(|(i, f)| command(f, &format!("{i}/{n}")).spawn().unwrap())
        .collect();
    children.into_iter().for_each(succeed);
    files
}

/// One unsharded run of `paths` and of `manipulate` on the bundled images, shared
/// by the tests.
fn single_run() -> &'static (PathBuf, PathBuf) {
    static RUN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("single");
        let (p, m) = (dir.join("paths.jsonl"), dir.join("manipulate.jsonl"));
        succeed(paths(&p, None).spawn().unwrap());
        succeed(manipulate(&p, &m, None).spawn().unwrap());
        (p, m)
    })
}

#[test]
fn three_parallel_shards_merge_to_the_single_run() {
    let (single_paths, single_manipulate) = single_run();
    let dir = scratch("three");
    let shards = run_shards(&dir, "paths", 3, |out, shard| paths(out, Some(shard)));
    let merged = dir.join("paths.jsonl");
    let (ok, stderr) = merge(&merged, &shards);
    assert!(ok, "{stderr}");
    assert_eq!(sorted_lines(&merged), sorted_lines(single_paths));

    let shards = run_shards(&dir, "manipulate", 3, |out, shard| {
        manipulate(&merged, out, Some(shard))
    });
    let merged_manipulate = dir.join("manipulate.jsonl");
    let (ok, stderr) = merge(&merged_manipulate, &shards);
    assert!(ok, "{stderr}");
    // One image at a time, in the same image order: the very same file.
    assert_eq!(
        std::fs::read(&merged_manipulate).unwrap(),
        std::fs::read(single_manipulate).unwrap()
    );
    // A merge may replace its own output, as a rerun would.
    assert!(merge(&merged_manipulate, &shards).0);
}

#[test]
fn a_killed_shard_resumed_merges_to_the_single_run() {
    let (single_paths, _) = single_run();
    let dir = scratch("killed");
    let killed = dir.join("paths-0.jsonl");
    let mut child = paths(&killed, Some("0/2"))
        .args(["--batch", "1"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while lines_written(&killed) < 2 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let other = run_shards(&dir, "other", 1, |out, _| paths(out, Some("1/2"))).remove(0);
    let files = [killed.clone(), other];
    let (ok, stderr) = merge(&dir.join("all.jsonl"), &files);
    assert!(!ok && stderr.contains("has not finished"), "{stderr}");
    let status = neuronpath().arg("status").arg(&dir).output().unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("paths run in 2 shards, 20 images") && table.contains("/10"),
        "{table}"
    );

    succeed(paths(&killed, Some("0/2")).spawn().unwrap());
    let (ok, stderr) = merge(&dir.join("all.jsonl"), &files);
    assert!(ok, "{stderr}");
    assert_eq!(
        sorted_lines(&dir.join("all.jsonl")),
        sorted_lines(single_paths)
    );
}

/// The command `status` gives to resume shard `shard` (`I/N`) of the run in `dir`.
fn resume_command(dir: &Path, shard: &str) -> String {
    let status = neuronpath().arg("status").arg(dir).output().unwrap();
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    table
        .lines()
        .skip_while(|l| !l.starts_with(&format!("shard {shard} ")))
        .nth(1)
        .and_then(|l| l.split_once("): "))
        .map(|(_, command)| command.to_string())
        .unwrap_or_else(|| panic!("no command to resume shard {shard}:\n{table}"))
}

#[test]
fn a_shard_that_stops_says_why_and_its_command_resumes_it() {
    let (single_paths, _) = single_run();
    let dir = scratch("stopped");
    // Shard 0 ended by SIGTERM (as scancel or a Slurm time limit) after a record.
    let term = dir.join("paths-0.jsonl");
    let child = paths(&term, Some("0/2"))
        .args(["--batch", "1"])
        .spawn()
        .unwrap();
    while lines_written(&term) < 1 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: signals a child of this process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{out:?}");
    // Shard 1 failed: its output cannot grow past 4 KiB (as a full disk).
    let full = dir.join("paths-1.jsonl");
    let shard = paths(&full, Some("1/2"));
    let mut limited = Command::new("bash");
    limited
        .args(["-c", "trap '' XFSZ; ulimit -f 4; exec \"$@\"", "bash"])
        .arg(shard.get_program())
        .args(shard.get_args());
    let out = limited.output().unwrap();
    assert!(!out.status.success(), "{out:?}");

    let status = neuronpath().arg("status").arg(&dir).output().unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("shard 0/2 stopped") && table.contains("terminated by SIGTERM"),
        "{table}"
    );
    assert!(
        table.contains("shard 1/2 failed") && table.contains("File too large"),
        "{table}"
    );
    let files = [term.clone(), full.clone()];
    let (ok, stderr) = merge(&dir.join("all.jsonl"), &files);
    assert!(
        !ok && stderr.contains("shard 0/2 has not finished: it stopped: terminated by SIGTERM"),
        "{stderr}"
    );
    for shard in ["0/2", "1/2"] {
        let command = resume_command(&dir, shard);
        let out = Command::new("sh").args(["-c", &command]).output().unwrap();
        assert!(out.status.success(), "{command}: {out:?}");
    }
    let (ok, stderr) = merge(&dir.join("all.jsonl"), &files);
    assert!(ok, "{stderr}");
    assert_eq!(
        sorted_lines(&dir.join("all.jsonl")),
        sorted_lines(single_paths)
    );
}

#[test]
fn merging_shards_that_do_not_make_one_run_is_refused() {
    let (single_paths, _) = single_run();
    let dir = scratch("refused");
    let shards = run_shards(&dir, "paths", 3, |out, shard| paths(out, Some(shard)));
    let out = dir.join("all.jsonl");

    // A missing shard, named with its images: every third key, sorted, from the third.
    let (ok, stderr) = merge(&out, &shards[..2]);
    let mut keys: Vec<String> = sorted_lines(single_paths)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["image"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    keys.dedup();
    assert!(!ok && stderr.contains("shard 2/3 is missing"), "{stderr}");
    for key in keys.iter().skip(2).step_by(3) {
        assert!(stderr.contains(key.as_str()), "{key}: {stderr}");
    }

    // Another setting.
    let steps = dir.join("steps.jsonl");
    let mut cmd = neuronpath();
    cmd.args([
        "paths",
        "--method",
        "jas,activation",
        "--steps",
        "5",
        "--threads",
        "1",
        "--shard",
        "1/3",
        "--out",
    ]);
    succeed(cmd.arg(&steps).stderr(Stdio::piped()).spawn().unwrap());
    let (ok, stderr) = merge(&out, &[shards[0].clone(), steps, shards[2].clone()]);
    assert!(
        !ok && stderr.contains("steps 5") && stderr.contains("steps 4"),
        "{stderr}"
    );

    // A shard given twice, and images duplicated into another shard's file.
    let (ok, stderr) = merge(
        &out,
        &[shards[0].clone(), shards[0].clone(), shards[2].clone()],
    );
    assert!(!ok && stderr.contains("shard 0/3 given twice"), "{stderr}");
    let mut text = std::fs::read_to_string(&shards[1]).unwrap();
    text.push_str(&std::fs::read_to_string(&shards[0]).unwrap());
    std::fs::write(&shards[1], text).unwrap();
    let (ok, stderr) = merge(&out, &shards);
    assert!(
        !ok && stderr.contains("duplicated") && stderr.contains(&keys[0]),
        "{stderr}"
    );

    // A shard never adds to the file of an unsharded run.
    let copy = dir.join("copy.jsonl");
    std::fs::copy(single_paths, &copy).unwrap();
    let result = paths(&copy, Some("0/3")).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success() && stderr.contains("without --shard"),
        "{stderr}"
    );

    // A file the merge did not write is never replaced.
    std::fs::write(&out, "notes\n").unwrap();
    std::fs::write(&shards[1], "").unwrap();
    let (ok, stderr) = merge(&out, &shards);
    assert!(
        !ok && stderr.contains("not an earlier merge's output"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "notes\n");
}

/// `neurons` over the bundled images for the neurons of the single run's paths.
fn neurons(paths: &Path, out: &Path, shard: Option<&str>) -> Command {
    let mut cmd = neuronpath();
    cmd.args([
        "neurons",
        "--threads",
        "1",
        "--top",
        "5",
        "--batch",
        "3",
        "--paths",
    ])
    .arg(paths);
    writing(cmd, out, shard)
}

#[test]
fn neuron_descriptions_of_three_shards_merge_to_the_single_run() {
    let (single_paths, _) = single_run();
    let dir = scratch("neurons");
    let single = dir.join("neurons.jsonl");
    succeed(neurons(single_paths, &single, None).spawn().unwrap());
    let shards = run_shards(&dir, "neurons", 3, |out, shard| {
        neurons(single_paths, out, Some(shard))
    });
    let merged = dir.join("merged.jsonl");
    let (ok, stderr) = merge(&merged, &shards[..2]);
    assert!(!ok && stderr.contains("missing"), "{stderr}");
    let (ok, stderr) = merge(&merged, &shards);
    assert!(ok, "{stderr}");
    // Top-K lists merged, exact class sums added, means and direct effects
    // derived again: the very lines of one run, in its order.
    assert_eq!(
        std::fs::read_to_string(&merged).unwrap(),
        std::fs::read_to_string(&single).unwrap()
    );
}
