//! The validate stage's checking code (`inspect`: one pass that detects, checks and hashes)
//! on big files read from disk:
//!
//! - a `docker save` archive with one big layer blob, vs `openssl dgst -sha256` of the same
//!   file (both read it from the page cache: the file was just written and read once);
//! - a big PNG, vs a plain `image` decode of the same file.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8or::config::ValidationLimits;
use k8or_workers::stages::validate::inspect::{inspect, Inspection, Verified};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::report::{Row, Target};
use crate::{support, Scale};

/// Runs of each side of the PNG comparison; the best of each counts.
const PNG_RUNS: usize = 3;

const MB: f64 = 1_000_000.0;

pub async fn run(scale: Scale) -> anyhow::Result<Vec<Row>> {
    tokio::task::spawn_blocking(move || run_blocking(scale))
        .await
        .context("validate bench task")?
}

fn run_blocking(scale: Scale) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();

    let archive = dir.path().join("image.tar");
    write_docker_save(&archive, scale.archive_bytes, dir.path())?;
    let size = std::fs::metadata(&archive)?.len() as f64;
    let openssl = openssl_sha256(&archive)?;
    let (inspection, took) = timed_inspect(&archive)?;
    anyhow::ensure!(
        matches!(inspection.result, Ok(Verified::Archive(_))),
        "the generated archive was refused: {:?}",
        inspection.result
    );
    let row = Row::new(
        format!(
            "validate archive, {} MiB (sha256-checked)",
            scale.archive_bytes >> 20
        ),
        size / MB / took.as_secs_f64(),
        "MB/s",
    );
    rows.push(
        match openssl {
            Some((digest, took)) => {
                anyhow::ensure!(
                    digest == inspection.sha256,
                    "openssl and validate disagree on the sha256"
                );
                row.reference(size / MB / took.as_secs_f64(), "openssl dgst -sha256")
            }
            None => row,
        }
        .target(Target::RatioAtLeast(0.9)),
    );

    let png = dir.path().join("big.png");
    let width = ((scale.png_pixels as f64 * 1.5).sqrt()) as u32;
    let height = u32::try_from(scale.png_pixels / u64::from(width))?;
    std::fs::write(&png, support::gradient_png(width, height))?;
    // Each side the best of a few runs, alternating: one run of half a second moves with
    // whatever else the machine does in it.
    let (mut decode, mut took) = (Duration::MAX, Duration::MAX);
    for _ in 0..PNG_RUNS {
        let started = Instant::now();
        let img = image::ImageReader::open(&png)?
            .with_guessed_format()?
            .decode()?;
        anyhow::ensure!(img.width() == width, "decoded the wrong picture");
        decode = decode.min(started.elapsed());
        drop(img);
        let (inspection, t) = timed_inspect(&png)?;
        anyhow::ensure!(
            matches!(inspection.result, Ok(Verified::Picture { .. })),
            "the generated PNG was refused: {:?}",
            inspection.result
        );
        took = took.min(t);
    }
    let mp = f64::from(width) * f64::from(height) / 1e6;
    rows.push(
        Row::new(
            format!("validate PNG, {mp:.1} MP ({width}x{height}), best of {PNG_RUNS}"),
            took.as_secs_f64(),
            "s",
        )
        .reference(decode.as_secs_f64(), "image decode")
        .target(Target::RatioAtMost(1.2)),
    );
    Ok(rows)
}

fn timed_inspect(path: &Path) -> anyhow::Result<(Inspection, Duration)> {
    let started = Instant::now();
    let inspection = inspect(File::open(path)?, &ValidationLimits::default())?;
    Ok((inspection, started.elapsed()))
}

/// The digest and the time of `openssl dgst -sha256`, after one untimed run that puts the
/// file in the page cache; `None` when there is no `openssl`.
fn openssl_sha256(path: &Path) -> anyhow::Result<Option<(String, Duration)>> {
    let run = || {
        Command::new("openssl")
            .arg("dgst")
            .arg("-sha256")
            .arg("-r")
            .arg(path)
            .output()
    };
    match run() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    let started = Instant::now();
    let out = run()?;
    let took = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let digest = text
        .split_whitespace()
        .next()
        .context("openssl printed nothing")?
        .to_owned();
    Ok(Some((digest, took)))
}

/// Pseudo-random bytes, fast to make (xorshift, 8 bytes a step).
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len())
            / 8
            * 8;
        let n = if n == 0 {
            usize::try_from(self.left).unwrap_or(0).min(buf.len())
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn header(size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_mtime(1_700_000_000);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// A `docker save` archive (config, `<id>/layer.tar`, manifest.json, repositories) whose
/// one layer holds a single file of about `bytes` bytes.
pub fn write_docker_save(out: &Path, bytes: u64, scratch: &Path) -> anyhow::Result<()> {
    let layer_path: PathBuf = scratch.join("layer.tar");
    {
        let mut layer = tar::Builder::new(BufWriter::new(File::create(&layer_path)?));
        let noise = Noise {
            state: 0x2545_f491_4f6c_dd1d,
            left: bytes,
        };
        layer.append_data(&mut header(bytes, false), "app/blob.bin", noise)?;
        layer.into_inner()?.flush()?;
    }
    let layer_sha = sha256_file(&layer_path)?;
    let layer_len = std::fs::metadata(&layer_path)?.len();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/app/run.sh"], "WorkingDir": "/app"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_sha}")]}
    }))?;
    let config_name = format!("{}.json", hex::encode(Sha256::digest(&config)));
    let layer_id = hex::encode(Sha256::digest(b"bench-layer"));
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": ["bench/big:v0-0-01"],
        "Layers": [format!("{layer_id}/layer.tar")]
    }]))?;
    let repositories = serde_json::to_vec(&json!({"bench/big": {"v0-0-01": layer_id}}))?;

    let mut b = tar::Builder::new(BufWriter::new(File::create(out)?));
    b.append_data(
        &mut header(config.len() as u64, false),
        &config_name,
        &config[..],
    )?;
    b.append_data(&mut header(0, true), format!("{layer_id}/"), io::empty())?;
    b.append_data(
        &mut header(3, false),
        format!("{layer_id}/VERSION"),
        &b"1.0"[..],
    )?;
    b.append_data(
        &mut header(layer_len, false),
        format!("{layer_id}/layer.tar"),
        File::open(&layer_path)?,
    )?;
    b.append_data(
        &mut header(manifest.len() as u64, false),
        "manifest.json",
        &manifest[..],
    )?;
    b.append_data(
        &mut header(repositories.len() as u64, false),
        "repositories",
        &repositories[..],
    )?;
    b.into_inner()?.flush()?;
    std::fs::remove_file(&layer_path)?;
    Ok(())
}
