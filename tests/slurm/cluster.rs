//! A one-node Slurm cluster of this test's own: Debian's munged, slurmctld and
//! slurmd started as children, as this user (root or not: every job is this
//! user's), with a config, key, ports and state, spool and log folders in a
//! temporary folder; stopped (jobs cancelled, daemons and any process left of
//! theirs killed) and its folder removed when dropped, pass or fail.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The programs the cluster needs, all from Debian's slurmctld, slurmd, munge and
/// slurm-client packages.
const PROGRAMS: [&str; 8] = [
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "scontrol",
    "scancel",
    "sinfo",
];

const NODE: &str = "np-node";

/// Seconds a requeued job is held before it starts again (Slurm's `cred_expire`:
/// a job's credential lifetime, 120 by default); long enough for a job to start
/// on a loaded machine.
const REQUEUE_HOLD: u32 = 20;

pub struct Cluster {
    pub dir: PathBuf,
    /// Where jobs are submitted from (their logs/ and outputs).
    pub work: PathBuf,
    user: String,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

/// Why this machine cannot run the cluster, if it cannot: skipped with that reason,
/// except in CI, which must run it (scripts/test installs the packages).
pub fn unavailable() -> Option<String> {
    let missing: Vec<&str> = PROGRAMS.into_iter().filter(|p| find(p).is_none()).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not installed; scripts/test installs Debian's slurmctld, slurmd, munge and slurm-client",
            missing.join(", ")
        )
    })
}

/// `program` on the PATH or in the system folders (root's sbin).
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Polls `ready` every 20 ms until it gives a value; panics after `timeout`,
/// naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Cluster {
    /// Starts munged, slurmctld and slurmd, and waits until the node is idle.
    pub fn start(name: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("neuronpath-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["key", "munge", "state", "spool", "log", "work"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::set_permissions(dir.join("key"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = dir.join("key/munge.key");
        let mut bytes = vec![0u8; 1024];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").unwrap(),
            &mut bytes,
        )
        .unwrap();
        std::fs::write(&key, bytes).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let user = Command::new("id").arg("-un").output().unwrap();
        let user = String::from_utf8(user.stdout).unwrap().trim().to_string();
        let conf = dir.join("slurm.conf");
        std::fs::write(&conf, config(&dir, &user)).unwrap();
        // Processes that slurmd leaves (its job steps) become this process's
        // children, so that none outlives the test.
        // SAFETY: a plain prctl on this process.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
        let mut cluster = Cluster {
            work: dir.join("work"),
            dir,
            user,
            conf,
            daemons: vec![],
        };
        let munge = cluster.dir.join("munge");
        let socket = munge.join("socket");
        cluster.spawn("munged", |c| {
            c.args(["--foreground", "--force"])
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--pid-file={}", munge.join("pid").display()))
                .arg(format!("--seed-file={}", munge.join("seed").display()))
        });
        wait_for("munged's socket", Duration::from_secs(60), || {
            socket.exists().then_some(())
        });
        let conf = cluster.conf.clone();
        cluster.spawn("slurmctld", |c| c.arg("-D").arg("-i").arg("-f").arg(&conf));
        cluster.spawn("slurmd", |c| c.args(["-D", "-N", NODE, "-f"]).arg(&conf));
        wait_for("the node to be idle", Duration::from_secs(120), || {
            let out = cluster.run("sinfo", &["-h", "-n", NODE, "-o", "%T"]);
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .eq("idle")
                .then_some(())
        });
        cluster
    }

    /// Starts the daemon `program` in the foreground, its output in the log folder;
    /// it dies with the thread that started it.
    fn spawn(&mut self, program: &'static str, args: impl FnOnce(&mut Command) -> &mut Command) {
        let log = std::fs::File::create(self.dir.join(format!("log/{program}.out"))).unwrap();
        let mut command = Command::new(find(program).unwrap());
        args(&mut command)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl only, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        self.daemons.push((program, child));
    }

    /// A Slurm client command of this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(find(program).unwrap_or_else(|| program.into()));
        command.env("SLURM_CONF", &self.conf);
        command
    }

    /// Runs a Slurm client command; panics with its stderr when it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The jobs pending or running (`squeue`), one `id state reason` a line.
    pub fn queue(&self) -> String {
        let out = self.run("squeue", &["-h", "-o", "%i %T %r"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The state of job `id` (kept a while after it ended), as squeue names it.
    pub fn state(&self, id: &str) -> String {
        let out = self.run("squeue", &["-h", "-t", "all", "-j", id, "-o", "%T"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until no job is pending or running.
    pub fn wait_idle(&self, timeout: Duration) {
        let mut last = String::new();
        let start = Instant::now();
        while start.elapsed() < timeout {
            last = self.queue();
            if last.trim().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "jobs still queued after {timeout:?}:\n{last}{}",
            self.logs()
        );
    }

    /// The last lines of the daemons' and the jobs' logs, for a failure's message.
    pub fn logs(&self) -> String {
        let jobs = std::fs::read_dir(self.work.join("logs"));
        let jobs = jobs.into_iter().flatten().flatten().map(|e| e.path());
        let daemons = self.daemons.iter();
        let daemons = daemons.map(|(p, _)| self.dir.join(format!("log/{p}.out")));
        let mut files: Vec<PathBuf> = daemons.chain(jobs).collect();
        files.sort();
        let mut text = String::new();
        for file in files {
            let log = std::fs::read_to_string(&file).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text += &format!("\n--- {} (last lines)\n", file.display());
            for line in tail.into_iter().rev() {
                text += line;
                text.push('\n');
            }
        }
        text
    }

    /// Kills every process left that is this process's child (the subreaper's):
    /// job steps orphaned by slurmd, and theirs in turn.
    fn kill_leftovers(&self) {
        for _ in 0..20 {
            let children = children();
            if children.is_empty() {
                return;
            }
            for pid in children {
                // SAFETY: signals and reaps a child of this process.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }
}

/// The processes whose parent is this one.
fn children() -> Vec<libc::pid_t> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let pid: libc::pid_t = name.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces, so after its ')'.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (ppid == me).then_some(pid)
        })
        .collect()
}

/// slurm.conf: one node with this machine's cores and memory (as `slurmd -C` reads
/// them), free ports, munge on the cluster's socket, everything under `dir`.
fn config(dir: &Path, user: &str) -> String {
    let hardware = Command::new(find("slurmd").unwrap())
        .arg("-C")
        .output()
        .unwrap();
    let hardware = String::from_utf8_lossy(&hardware.stdout);
    let node = hardware
        .lines()
        .find(|l| l.starts_with("NodeName="))
        .expect("slurmd -C prints the node's hardware");
    let (_, resources) = node.split_once(' ').unwrap();
    let d = dir.display();
    format!(
        "ClusterName=neuronpath-test
SlurmctldHost=localhost
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/socket,cred_expire={REQUEUE_HOLD}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait=5
MinJobAge=3600
MailProg=/bin/true
NodeName={NODE} NodeAddr=127.0.0.1 {resources} State=UNKNOWN
PartitionName=test Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
",
        ctld = free_port(),
        slurmd = free_port(),
    )
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // The jobs first: their steps outlive slurmd.
        let _ = self
            .command("scancel")
            .args(["--user", &self.user])
            .output();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            match self.command("squeue").args(["-h"]).output() {
                Ok(out) if out.status.success() && !out.stdout.is_empty() => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                _ => break,
            }
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            // SAFETY: signals a child of this process.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_leftovers();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
