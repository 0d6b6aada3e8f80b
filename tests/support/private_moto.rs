//! A moto server of one test's own, for tests that must freeze or kill the backend
//! without stalling every other AWS-mode test on the shared server.
#![allow(dead_code, reason = "each test target uses a different part")]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server of this test's own, in its own process group: frozen, thawed, and killed
/// when the test ends, however it ends.
pub struct PrivateMoto {
    child: Child,
    pub endpoint: String,
    pub log: PathBuf,
}

impl PrivateMoto {
    /// Starts `.venv/bin/moto_server` on a free loopback port and waits until it accepts
    /// connections. `None` (after a notice) when the venv is missing on a developer's
    /// machine; under CI a missing venv fails the test.
    pub fn start(log_dir: &Path) -> Option<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests crate sits in the workspace");
        let bin = root.join(".venv/bin/moto_server");
        if !bin.is_file() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{} is missing: run `scripts/moto install` (scripts/test does) before the \
                 AWS-mode tests",
                bin.display()
            );
            eprintln!(
                "SKIPPED: {} is missing; run `scripts/moto install` to run the AWS-mode \
                 tests",
                bin.display()
            );
            return None;
        }
        let port = free_port();
        let log = log_dir.join("moto.log");
        let file = std::fs::File::create(&log).expect("moto log");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("moto log"))
            .stderr(file)
            // Its own group: the signals reach the server and anything it forks, and a
            // Ctrl-C of the test run does not stop it half-way.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        moto.wait_until_listening(SocketAddr::from(([127, 0, 0, 1], port)));
        Some(moto)
    }

    fn wait_until_listening(&mut self, addr: SocketAddr) {
        let until = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "moto server exited at start ({status}):\n{}",
                    crate::api_process::tail(&self.log)
                );
            }
            assert!(
                Instant::now() < until,
                "moto server did not listen on {addr} within 60 s:\n{}",
                crate::api_process::tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kill -<signal> -<group>`.
    fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([
                &format!("-{signal}"),
                "--",
                &format!("-{}", self.child.id()),
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGSTOP: the server keeps its state and its sockets, and answers nothing.
    pub fn freeze(&self) {
        assert!(self.signal("STOP"), "SIGSTOP to the moto server");
    }

    pub fn thaw(&self) {
        assert!(self.signal("CONT"), "SIGCONT to the moto server");
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        // A stopped process does not act on SIGTERM, but SIGKILL ends it either way; the
        // SIGCONT lets anything else in its group die cleanly too.
        self.signal("CONT");
        self.signal("KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (a moment ago).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
