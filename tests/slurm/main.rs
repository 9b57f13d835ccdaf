//! The Slurm example (examples/slurm/submit.sh) run for real, on a one-node Slurm
//! cluster the test starts, over the bundled model and images in 3 array tasks:
//! the merged paths and manipulation hold the lines of an unsharded run; a task
//! requeued mid-run (`scontrol requeue`, as on preemption) resumes by itself; a
//! task cancelled mid-run (`scancel`) makes the paths' merge refuse, naming it,
//! and cancels the jobs after it (nothing waits forever), `status` names it and the
//! command that resumes it, and that command finishes the run.
//!
//! Skipped, saying why, only where this machine cannot run Slurm (its packages
//! missing: scripts/test installs them where apt-get can, as root or with sudo);
//! never in CI.

mod cluster;
#[path = "../common/mod.rs"]
mod common;

use cluster::{wait_for, Cluster};
use common::{lines_written, neuronpath, sorted_lines};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Generous for a loaded 2-core machine: a task starting, or a step of the run.
const START: Duration = Duration::from_secs(300);
const STEP: Duration = Duration::from_secs(600);

/// The `paths` flags of every run here: one image a batch, so that a task stopped
/// mid-run has written some of its images and not others.
const PATHS_ARGS: [&str; 4] = ["--method", "jas,activation", "--batch", "1"];

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

/// The unsharded run (paths, then manipulate) with the settings of the tasks.
fn single_run(dir: &Path) -> Child {
    let bin = env!("CARGO_BIN_EXE_neuronpath");
    let script = format!(
        "{bin} paths --model {m} --images {i} --threads 1 {args} --out {d}/paths.jsonl && \
         {bin} manipulate --model {m} --images {i} --threads 1 --paths {d}/paths.jsonl --out {d}/manipulate.jsonl",
        m = asset("vit-cifar10").display(),
        i = asset("images").display(),
        args = PATHS_ARGS.join(" "),
        d = dir.display(),
    );
    std::fs::create_dir_all(dir).unwrap();
    Command::new("bash")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The job ids submit.sh printed: paths array, its merge, manipulate array, its merge.
fn submit(cluster: &Cluster, run: &Path) -> [String; 4] {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm/submit.sh");
    let out = cluster
        .command("bash")
        .arg(script)
        .current_dir(run)
        .env("MODEL", asset("vit-cifar10"))
        .env("IMAGES", asset("images"))
        .env("SHARDS", "3")
        .env("OUT", "out")
        .env("PATHS_ARGS", PATHS_ARGS.join(" "))
        .env("NEURONPATH", env!("CARGO_BIN_EXE_neuronpath"))
        // One core a task (the node is this machine), little memory.
        .env("JOB_OPTS", "--cpus-per-task=1 --mem=300M")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    job_ids(&stdout)
}

/// The ids in "paths array A -> merge B" and "manipulate array C -> merge D".
fn job_ids(stdout: &str) -> [String; 4] {
    let ids: Vec<String> = stdout
        .lines()
        .flat_map(|l| l.split_whitespace())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .map(String::from)
        .collect();
    ids.try_into()
        .unwrap_or_else(|ids| panic!("four job ids in {stdout:?}, not {ids:?}"))
}

/// The shard manifest beside `out`, once there.
fn manifest(out: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(format!("{}.shard.json", out.display())).ok()?;
    serde_json::from_str(&text).ok()
}

/// `neuronpath status dir`.
fn status(dir: &Path) -> String {
    let out = neuronpath().arg("status").arg(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    stdout
}

/// The row of shard `shard` (`I/N`) in a status table.
fn row<'a>(table: &'a str, shard: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{shard} ")))
        .unwrap_or_else(|| panic!("no row for shard {shard}:\n{table}"))
}

/// Waits until the task writing `out` has written a record, and is still running.
fn mid_run(out: &Path) {
    wait_for(
        &format!("a first record in {}", out.display()),
        START,
        || (lines_written(out) > 0).then_some(()),
    );
}

/// Waits until the shard of `out` says it stopped; panics if it finished first
/// (the task ran out of images before the test could stop it).
fn stopped(out: &Path) -> serde_json::Value {
    let m = wait_for(&format!("{} to stop", out.display()), STEP, || {
        manifest(out).filter(|m| !m["stopped"].is_null() || !m["finished"].is_null())
    });
    assert!(
        m["finished"].is_null(),
        "{}: finished before it was stopped: too few images a task",
        out.display()
    );
    m
}

/// The state of every task of job `id`, deduplicated.
fn states(cluster: &Cluster, id: &str) -> Vec<String> {
    let mut states: Vec<String> = cluster.state(id).lines().map(String::from).collect();
    states.dedup();
    states
}

#[test]
fn the_slurm_example_runs_on_a_slurm_cluster() {
    if let Some(reason) = cluster::unavailable() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the Slurm test, but {reason}"
        );
        eprintln!("skipped: {reason}");
        return;
    }
    let cluster = Cluster::start("slurm");
    let single_dir = cluster.dir.join("single");
    let single = single_run(&single_dir);
    let run = &cluster.work;
    let out = run.join("out");
    let [paths, merge_paths, manipulate, merge_manipulate] = submit(&cluster, run);
    let shard = |i: usize| out.join(format!("paths-{i}.jsonl"));

    // Task 0 mid-run: status shows it running; then Slurm requeues it (killed, and
    // queued again, as on preemption), and status shows it stopped until Slurm
    // starts it again (this cluster holds a requeued job 20 s).
    mid_run(&shard(0));
    let table = status(&out);
    assert!(
        table.contains("paths run in 3 shards, 20 images"),
        "{table}"
    );
    assert!(row(&table, "0/3").contains("running"), "{table}");
    cluster.run("scontrol", &["requeue", &format!("{paths}_0")]);
    stopped(&shard(0));
    let table = status(&out);
    assert!(row(&table, "0/3").contains("stopped"), "{table}");
    assert!(table.contains(&format!("(Slurm job {paths}_0)")), "{table}");
    // Task 1 mid-run: cancelled, as by its user or a time limit.
    mid_run(&shard(1));
    cluster.run("scancel", &[&format!("{paths}_1")]);
    stopped(&shard(1));
    let table = status(&out);
    assert!(row(&table, "1/3").contains("stopped"), "{table}");
    assert!(table.contains(&format!("(Slurm job {paths}_1)")), "{table}");

    // The paths' merge ran once every task ended (task 0 resumed and finished) and
    // refused the cancelled shard, naming it and its resumption; the jobs after it
    // were cancelled.
    cluster.wait_idle(STEP);
    let resumed = manifest(&shard(0)).unwrap();
    assert!(!resumed["finished"].is_null(), "{resumed}");
    assert!(resumed["done_at_start"].as_u64().unwrap() > 0, "{resumed}");
    assert_eq!(states(&cluster, &merge_paths), ["FAILED"]);
    assert_eq!(states(&cluster, &manipulate), ["CANCELLED"]);
    assert_eq!(states(&cluster, &merge_manipulate), ["CANCELLED"]);
    let log =
        std::fs::read_to_string(run.join(format!("logs/np-merge-{merge_paths}.out"))).unwrap();
    assert!(
        log.contains("shard 1/3 has not finished") && log.contains("submit.sh paths 1"),
        "{log}"
    );
    assert!(!out.join("paths.jsonl").exists());

    // status names the cancelled task and the command that resumes it; that command
    // finishes the run.
    let table = status(&out);
    assert!(row(&table, "0/3").contains("finished"), "{table}");
    assert!(row(&table, "1/3").contains("stopped"), "{table}");
    let resume = table
        .lines()
        .skip_while(|l| !l.starts_with("shard 1/3 stopped"))
        .nth(1)
        .and_then(|l| l.split_once("): "))
        .map(|(_, command)| command.to_string())
        .unwrap_or_else(|| panic!("no command to resume shard 1:\n{table}"));
    assert!(resume.ends_with("submit.sh paths 1"), "{resume}");
    let again = cluster
        .command("bash")
        .args(["-c", &resume])
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    cluster.wait_idle(STEP);
    let resumed = manifest(&shard(1)).unwrap();
    assert!(!resumed["finished"].is_null(), "{resumed}");
    assert!(resumed["done_at_start"].as_u64().unwrap() > 0, "{resumed}");

    let single = single.wait_with_output().unwrap();
    assert!(
        single.status.success(),
        "{}",
        String::from_utf8_lossy(&single.stderr)
    );
    for stem in ["paths", "manipulate"] {
        let merged = out.join(format!("{stem}.jsonl"));
        assert!(
            merged.exists(),
            "no {}:\n{}",
            merged.display(),
            status(&out)
        );
        assert_eq!(
            sorted_lines(&merged),
            sorted_lines(&single_dir.join(format!("{stem}.jsonl"))),
            "{stem}"
        );
    }
    let table = status(&out);
    for stem in ["paths", "manipulate"] {
        assert!(
            table.contains(&format!("{stem} run in 3 shards, 20 images")),
            "{table}"
        );
    }
    let done: Vec<&str> = table.lines().filter(|l| l.starts_with("all ")).collect();
    assert_eq!(done.len(), 2, "{table}");
    for line in done {
        assert!(
            line.contains("20/20") && line.contains("finished"),
            "{table}"
        );
    }
}
