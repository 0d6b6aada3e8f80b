//! A real `k8or-api serve` process for the multi-process tests: started with the test's
//! settings as environment variables on a port the OS picks (read back from its JSON log),
//! stopped with SIGTERM; and the binaries' one-shot commands (`token`, `provision`).

#![allow(dead_code, reason = "each test target uses a different part")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a start (opening and provisioning the stores, binding) may take.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A binary of the workspace: the one cargo built next to this test
/// (`target/<profile>/<name>`; `scripts/test` builds them before the tests run).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it first (cargo build --bin k8or-api --bin k8or-worker; \
         scripts/test does)",
        bin.display()
    );
    bin
}

/// A command with exactly `env` (and PATH): nothing of the test's own environment leaks in.
fn command(bin: &Path, env: &[(String, String)], rust_log: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    cmd
}

/// Runs a one-shot command to its end; panics with its output if it fails.
fn run_to_end(bin: &Path, env: &[(String, String)], args: &[&str], dir: &Path) -> Output {
    let output = command(bin, env, "warn")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", bin.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        bin.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `k8or-api token --user U --role R`: the token, signed with the environment's secret.
pub fn token(env: &[(String, String)], user: &str, role: &str, dir: &Path) -> String {
    let out = run_to_end(
        &workspace_bin("k8or-api"),
        env,
        &["token", "--user", user, "--role", role],
        dir,
    );
    let token = String::from_utf8(out.stdout).expect("a token is text");
    token.trim().to_owned()
}

/// `k8or-worker provision`: its report (stdout).
pub fn provision(env: &[(String, String)], dir: &Path) -> String {
    let out = run_to_end(&workspace_bin("k8or-worker"), env, &["provision"], dir);
    String::from_utf8(out.stdout).expect("the report is text")
}

/// A running `k8or-api serve`.
pub struct Api {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Api {
    /// Starts the API (`log_dir` as its working folder, so no `queues.toml` is read) and
    /// waits until it listens.
    pub fn start(env: &[(String, String)], log_dir: &Path) -> Self {
        let log = log_dir.join("api.log");
        let file = std::fs::File::create(&log).expect("api log");
        // The log goes to stdout (tracing's default), panics and start errors to stderr.
        let stdout = file.try_clone().expect("api log");
        let child = command(&workspace_bin("k8or-api"), env, "info")
            .arg("serve")
            .current_dir(log_dir)
            .stdout(stdout)
            .stderr(file)
            .spawn()
            .expect("start k8or-api");
        let mut api = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        api.addr = api.wait_until_listening();
        api
    }

    /// The address of the JSON log line `intake API listening`.
    fn wait_until_listening(&mut self) -> SocketAddr {
        let until = Instant::now() + START_LIMIT;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(listening_addr) {
                return addr;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("k8or-api exited at start ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < until,
                "k8or-api did not listen within {START_LIMIT:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit (the server finishes the requests in flight).
    pub fn stop(mut self) -> ExitStatus {
        terminate(self.child.id());
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "k8or-api did not stop within 60 s of SIGTERM:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `kill -TERM <pid>`.
pub fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

/// The last 40 lines of a log file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `{"fields":{"message":"intake API listening","addr":"127.0.0.1:1234"},…}` → the address.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "intake API listening" {
        return None;
    }
    fields.get("addr")?.as_str()?.parse().ok()
}

#[test]
fn the_listening_line_gives_the_address() {
    let line = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","fields":{"message":"intake API listening","addr":"127.0.0.1:4321"},"target":"k8or_api::startup"}"#;
    assert_eq!(
        listening_addr(line),
        Some("127.0.0.1:4321".parse().unwrap())
    );
    assert_eq!(
        listening_addr(r#"{"fields":{"message":"other","addr":"127.0.0.1:1"}}"#),
        None
    );
    assert_eq!(listening_addr("not json"), None);
}
