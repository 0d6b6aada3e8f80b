//! Ingest: one big multipart upload (`metadata`, then the `image` part streamed by curl from
//! a file) to a real `k8or-api serve` process on the embedded backend, vs writing the same
//! bytes to a file with fsync in the same folder (before and after the upload; the faster
//! counts). The server's peak RSS (`VmHWM`) is read
//! right after the upload is answered.
//!
//! The server is the release binary `target/release/k8or-api` (built first if missing, or
//! named by `K8OR_API_BIN`), started in a temporary data folder with its own token secret.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::report::{Row, Target};
use crate::{support, Scale};

const MB: f64 = 1_000_000.0;
const MIB: f64 = 1_048_576.0;
const RSS_LIMIT_MIB: f64 = 64.0;

pub async fn run(scale: Scale) -> anyhow::Result<Vec<Row>> {
    tokio::task::spawn_blocking(move || run_blocking(scale))
        .await
        .context("ingest bench task")?
}

/// The workspace's release `k8or-api`, built if it is not there.
fn api_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("K8OR_API_BIN") {
        return Ok(PathBuf::from(p));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    let bin = target.join("release").join("k8or-api");
    if !bin.exists() {
        eprintln!("building the release k8or-api for the ingest benchmark…");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--release", "-p", "k8or-api", "--bin", "k8or-api"])
            .current_dir(&workspace)
            .status()
            .context("running cargo build")?;
        anyhow::ensure!(status.success(), "cargo build of k8or-api failed");
    }
    Ok(bin)
}

/// A server process, stopped (SIGTERM, then killed) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn api(bin: &Path, dir: &Path, listen: &str, secret: &str) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(dir)
        .env("K8OR_DATA_DIR", dir.join("data"))
        .env("K8OR_LISTEN", listen)
        .env("K8OR_TOKEN_SECRET", secret)
        .env("RUST_LOG", "warn");
    c
}

fn vm_hwm_kib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc status")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed VmHWM")?
        .parse()?;
    Ok(kib)
}

fn write_noise(path: &Path, bytes: u64) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for chunk in block.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let mut left = bytes;
    let mut turn = 0u8;
    while left > 0 {
        // Vary each block a little, so no layer below can deduplicate them.
        block[0] = turn;
        turn = turn.wrapping_add(1);
        let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.into_inner()?.sync_all()
}

/// Copies `from` to a new file through a 1 MiB buffer and fsyncs it: what storing the
/// upload costs with no HTTP, multipart or hashing around it.
fn file_write_rate(from: &Path, to: &Path) -> anyhow::Result<f64> {
    let mut src = File::open(from)?;
    let started = Instant::now();
    let mut dst = File::create(to)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
    dst.sync_all()?;
    let took = started.elapsed();
    std::fs::remove_file(to)?;
    Ok(total as f64 / MB / took.as_secs_f64())
}

fn curl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("curl")
        .args(args)
        .output()
        .context("running curl")?;
    anyhow::ensure!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn run_blocking(scale: Scale) -> anyhow::Result<Vec<Row>> {
    let bin = api_binary()?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let secret = hex::encode(rand::random::<[u8; 32]>());

    let token = api(&bin, dir.path(), &listen, &secret)
        .args(["token", "--user", "jamesbond", "--role", "user"])
        .output()
        .context("k8or-api token")?;
    anyhow::ensure!(
        token.status.success(),
        "k8or-api token: {}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout)?.trim().to_owned();

    let log = File::create(dir.path().join("server.log"))?;
    let server = Server(
        api(&bin, dir.path(), &listen, &secret)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting k8or-api serve")?,
    );
    let health = format!("http://{listen}/healthz");
    let started = Instant::now();
    while curl(&["-sf", &health]).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "k8or-api did not start; see its log"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let upload = dir.path().join("upload.bin");
    write_noise(&upload, scale.ingest_bytes)?;
    let metadata = dir.path().join("metadata.json");
    std::fs::write(&metadata, serde_json::to_vec(&support::seed_json())?)?;
    let copy = dir.path().join("copy.bin");
    let before = file_write_rate(&upload, &copy)?;

    let auth = format!("Authorization: Bearer {token}");
    let meta_part = format!("metadata=<{};type=application/json", metadata.display());
    let image_part = format!("image=@{};type=application/octet-stream", upload.display());
    let url = format!("http://{listen}/api/v1/jobs");
    let server_pid = server.0.id().to_string();
    let cpu_before = support::cpu_time(&server_pid).zip(support::children_cpu_time());
    let started = Instant::now();
    let answer = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &auth,
        "-H",
        "Expect:",
        "-F",
        &meta_part,
        "-F",
        &image_part,
        &url,
    ])?;
    let took = started.elapsed();
    let cpu_after = support::cpu_time(&server_pid).zip(support::children_cpu_time());
    let rss_mib = vm_hwm_kib(server.0.id())? / 1024.0;
    anyhow::ensure!(answer.trim() == "202", "the upload was answered {answer}");
    drop(server);
    // This VM's disk moves a lot between moments (an fsync of 1 GiB has measured from
    // 260 MB/s to 1.9 GB/s), so the reference is taken on both sides of the upload and the
    // faster one counts: a slow moment of the disk never flatters the ratio.
    let after = file_write_rate(&upload, &copy)?;
    let reference = before.max(after);

    let mib = scale.ingest_bytes as f64 / MIB;
    // Where the time goes: CPU per GiB in the server and in curl (the only child that ends
    // during the upload), against the upload's wall time per GiB.
    let gib = scale.ingest_bytes as f64 / (MIB * 1024.0);
    let cpu_note = cpu_before
        .zip(cpu_after)
        .map_or_else(String::new, |((s0, c0), (s1, c1))| {
            format!(
                "; CPU per GiB: server {:.2} s + curl {:.2} s, in {:.2} s",
                (s1.saturating_sub(s0)).as_secs_f64() / gib,
                (c1.saturating_sub(c0)).as_secs_f64() / gib,
                took.as_secs_f64() / gib,
            )
        });
    Ok(vec![
        Row::new(
            format!("ingest, {mib:.0} MiB multipart over HTTP{cpu_note}"),
            scale.ingest_bytes as f64 / MB / took.as_secs_f64(),
            "MB/s",
        )
        .reference(
            reference,
            format!("file write + fsync, the faster of {before:.0} before / {after:.0} after"),
        )
        .target(Target::RatioAtLeast(0.7)),
        Row::new(
            format!("ingest server peak RSS (VmHWM), {mib:.0} MiB upload"),
            rss_mib,
            "MiB",
        )
        .target(Target::AtMost(RSS_LIMIT_MIB)),
    ])
}
