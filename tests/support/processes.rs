//! Real `k8or-worker run` processes on a data folder shared with the test: started with the
//! test's settings as environment variables, killed with SIGKILL or stopped with SIGTERM,
//! and their CPU time read from `/proc`.

#![allow(dead_code, reason = "each test target uses a different part")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use k8or::{Settings, Stage};

/// The `k8or-worker` binary: `K8OR_WORKER_BIN`, else the one cargo built next to this test
/// (`target/<profile>/k8or-worker`; `cargo nextest run --workspace` builds it).
pub fn worker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("K8OR_WORKER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> or target/<profile>/examples/<example>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/…");
    let bin = profile_dir.join("k8or-worker");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (cargo build -p k8or-workers --bin k8or-worker, \
         or run the whole workspace's tests), or set K8OR_WORKER_BIN",
        bin.display()
    );
    bin
}

/// Settings for a folder shared by the test and its workers: short visibility timeouts and
/// backoffs, so recovery after a kill takes seconds.
pub fn shared_settings(data_dir: &Path, tweak: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings {
        data_dir: data_dir.to_owned(),
        ..Settings::default()
    };
    for stage in Stage::ALL {
        let c = s.stages.get_mut(stage);
        c.visibility_timeout_secs = 2;
        c.backoff_base_ms = 100;
        c.backoff_max_ms = 500;
        c.jitter = 0.0;
        c.wait_time_secs = 1;
        c.max_receive_count = 20;
    }
    tweak(&mut s);
    s.validate().expect("test settings are valid");
    s
}

/// The environment variables that give a worker process the same settings.
pub fn settings_env(s: &Settings) -> Vec<(String, String)> {
    let mut env = vec![
        ("K8OR_DATA_DIR".to_owned(), s.data_dir.display().to_string()),
        ("K8OR_BACKEND".to_owned(), "embedded".to_owned()),
    ];
    for stage in Stage::ALL {
        let c = s.stages.get(stage);
        // `PERSIST-METADATA`, not `PERSIST_METADATA`: the underscore form is read as the
        // field's alias and clashes with the built-in defaults ("duplicate field").
        let prefix = format!("K8OR_STAGES__{}__", stage.as_str().to_uppercase());
        for (key, value) in [
            (
                "VISIBILITY_TIMEOUT_SECS",
                c.visibility_timeout_secs.to_string(),
            ),
            ("MAX_RECEIVE_COUNT", c.max_receive_count.to_string()),
            ("BACKOFF_BASE_MS", c.backoff_base_ms.to_string()),
            ("BACKOFF_MAX_MS", c.backoff_max_ms.to_string()),
            ("JITTER", c.jitter.to_string()),
            ("WAIT_TIME_SECS", c.wait_time_secs.to_string()),
            ("CONCURRENCY", c.concurrency.to_string()),
        ] {
            env.push((format!("{prefix}{key}"), value));
        }
    }
    env
}

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub env: Vec<(String, String)>,
    /// `--inject-faults` (empty: none).
    pub faults: String,
    pub grace_secs: u64,
    /// Where the processes write their logs.
    pub log_dir: PathBuf,
}

/// `k8or-worker <args>` run to its end in `dir` with `env` as its whole environment (and
/// PATH); its stdout. Panics with its output if it fails.
pub fn run_cli(env: &[(String, String)], dir: &Path, args: &[&str]) -> String {
    let out = Command::new(worker_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run k8or-worker");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "k8or-worker {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A running `k8or-worker run`.
pub struct Worker {
    child: Child,
    pub log: PathBuf,
}

impl Worker {
    /// `k8or-worker run` with the spec's grace, faults and no dead-letter monitor.
    pub fn start(spec: &WorkerSpec, name: &str) -> Self {
        Self::run_with(
            &spec.env,
            &spec.log_dir,
            name,
            "warn",
            &[
                "--grace-secs",
                &spec.grace_secs.to_string(),
                "--monitor-secs",
                "0",
                "--inject-faults",
                &spec.faults,
            ],
        )
    }

    /// `k8or-worker run <args>` in `dir` with `env` as its whole environment (and PATH),
    /// logging at `log_level` to `<dir>/<name>.log`.
    pub fn run_with(
        env: &[(String, String)],
        dir: &Path,
        name: &str,
        log_level: &str,
        args: &[&str],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("worker log");
        let child = Command::new(worker_bin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", log_level)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("run")
            .args(args)
            // No queues.toml there: the environment is the whole configuration.
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start k8or-worker");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// Waits for the process to exit, up to `limit`; `None` if it is still running.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate();
        match self.wait_for_exit(Duration::from_secs(60)) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                panic!(
                    "k8or-worker did not stop within 60 s of SIGTERM\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// User plus system CPU time so far, from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.pid())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Clock ticks per second of `/proc` times.
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A process's user plus system CPU time.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/pid/stat");
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    Duration::from_millis((utime + stime) * 1000 / clock_ticks())
}
