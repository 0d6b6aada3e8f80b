//! What the benchmarks share: a fresh provisioned embedded backend, submissions written as
//! the intake writes them (the same steps as `tests/support/pipeline.rs`, copied so that
//! this crate does not pull in the tests crate and its AWS feature), and generated pictures.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use image::{ImageFormat, Rgb, RgbImage};
use k8or::job::StoredImage;
use k8or::model::UploadRequest;
use k8or::store::blobs::{bytes_body, put_checked};
use k8or::{Context, JobEnvelope, JobRecord, Settings};
use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;

/// The temporary folders of this run, removed when it ends ([`remove_folders`]), not when
/// each benchmark ends: on ext4 without a journal (this machine's disk), every new file's
/// inode allocation scans past the inodes freed in the last few minutes, so a benchmark run
/// right after another's cleanup of thousands of files would measure that cleanup.
static FOLDERS: Mutex<Vec<TempDir>> = Mutex::new(Vec::new());

/// A fresh temporary folder (in `TMPDIR`), kept until [`remove_folders`].
pub fn folder() -> anyhow::Result<PathBuf> {
    keep(tempfile::tempdir().context("temp dir")?)
}

/// A fresh temporary folder in `parent`, kept until [`remove_folders`].
pub fn folder_in(parent: &Path) -> anyhow::Result<PathBuf> {
    keep(
        tempfile::tempdir_in(parent)
            .with_context(|| format!("temp dir in {}", parent.display()))?,
    )
}

fn keep(dir: TempDir) -> anyhow::Result<PathBuf> {
    let path = dir.path().to_owned();
    FOLDERS.lock().expect("bench folders lock").push(dir);
    Ok(path)
}

/// Where a memory-backed folder is, if this machine has one (Linux's `/dev/shm`).
pub const RAM_FOLDER: &str = "/dev/shm";

/// The memory-backed folder, if there is one with room for a pipeline run (a container's
/// `/dev/shm` is often 64 MiB, too small for 2,000 jobs' SQLite files).
pub fn ram_folder(room: u64) -> Option<&'static Path> {
    let path = Path::new(RAM_FOLDER);
    if filesystem(path) != "tmpfs" {
        return None;
    }
    #[cfg(target_os = "linux")]
    {
        let fs = rustix::fs::statvfs(path).ok()?;
        (fs.f_bavail.saturating_mul(fs.f_frsize) >= room).then_some(path)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = room;
        None
    }
}

/// The kind of filesystem `path` is on, for the table's labels: the disk's speed and
/// quirks (ext4 without a journal: see [`FOLDERS`]) are part of what a figure measures.
pub fn filesystem(path: &Path) -> &'static str {
    #[cfg(target_os = "linux")]
    {
        // Magic numbers from statfs(2).
        match rustix::fs::statfs(path).map(|s| s.f_type as u64) {
            Ok(0xEF53) => "ext4",
            Ok(0x0102_1994) => "tmpfs",
            Ok(0x5846_5342) => "xfs",
            Ok(0x9123_683E) => "btrfs",
            Ok(0x794C_7630) => "overlayfs",
            Ok(_) => "other fs",
            Err(_) => "unknown fs",
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        "unknown fs"
    }
}

/// Files the probe of [`new_file_cost`] makes.
const PROBE_FILES: u32 = 500;
/// A new file slower than this says the disk is scanning past recently freed inodes.
const SLOW_NEW_FILE: Duration = Duration::from_micros(100);

/// What making a small file costs in `dir` now: the mean time of 500 files of 4 KiB made
/// one after another in a new folder under `dir` (kept until the run's folders go, so the
/// probe frees no inode). On ext4 without a journal it is tens of microseconds on a quiet
/// disk and up to about a millisecond within minutes of thousands of files deleted nearby
/// (every new inode's allocation scans past the ones freed lately); a disk figure measured
/// then carries that scan on every file it makes, so the rows print this beside it.
fn new_file_cost(dir: &Path) -> anyhow::Result<Duration> {
    let probe = dir.join("new-file-probe");
    std::fs::create_dir(&probe).with_context(|| format!("making {}", probe.display()))?;
    let data = [0u8; 4096];
    let started = Instant::now();
    for i in 0..PROBE_FILES {
        std::fs::write(probe.join(i.to_string()), data).context("probe file")?;
    }
    Ok(started.elapsed() / PROBE_FILES)
}

/// The filesystem of `dir` and, as [`new_file_cost`] measured it there, what a new file
/// costs: `ext4 (a new file 0.031 ms)`.
pub fn describe_disk(dir: &Path) -> anyhow::Result<String> {
    let cost = new_file_cost(dir)?;
    if cost > SLOW_NEW_FILE {
        eprintln!(
            "note: a new file costs {:.3} ms in {} now (under 0.05 on this project's \
             machine when its disk is quiet); on ext4 without a journal the usual cause is \
             thousands of files deleted nearby in the last minutes, which the rows on this \
             disk will carry: for the software's own figure, run again after ~6 minutes \
             without deletions",
            cost.as_secs_f64() * 1000.0,
            dir.display()
        );
    }
    Ok(format!(
        "{} (a new file {:.3} ms)",
        filesystem(dir),
        cost.as_secs_f64() * 1000.0
    ))
}

/// Removes the run's temporary folders.
fn remove_folders() {
    FOLDERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
}

/// Calls [`remove_folders`] when dropped: the folders live in a static, which nothing
/// drops when the process exits, so a run that ends early (an error, a failed test) would
/// otherwise leave them behind, in `/dev/shm` holding memory.
pub struct FolderCleanup;

impl Drop for FolderCleanup {
    fn drop(&mut self) {
        remove_folders();
    }
}

/// A provisioned embedded backend in a fresh temporary folder.
pub async fn context(tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Context> {
    context_at(folder()?, tweak).await
}

/// A provisioned embedded backend in `dir`.
pub async fn context_at(
    dir: PathBuf,
    tweak: impl FnOnce(&mut Settings),
) -> anyhow::Result<Context> {
    let mut settings = Settings {
        data_dir: dir,
        ..Settings::default()
    };
    tweak(&mut settings);
    settings.validate().context("bench settings")?;
    let stores = k8or::store::open(&settings).await.context("open stores")?;
    k8or::store::provision(&stores, &settings)
        .await
        .context("provision")?;
    Ok(Context::new(settings, stores))
}

/// The seed's example upload (4.1 / 6.1), as JSON, without an image UID.
pub fn seed_json() -> serde_json::Value {
    let description = "The story is set in a colorful and vibrant world of the Trolls, small and happy creatures with wild and colorful hair.";
    json!({
        "PID": "c8fms03-c8bms06-e140",
        "imageMetadata": {
            "icao": "British", "tail": "G-AAAA", "Part": "21117-1",
            "imageName": "Trolls World Tour (2020)", "imageVersion": "v0-0-01",
            "imageCategory": "Movie", "Description": description, "port": "80",
            "envVars": [{"key": "VAR1", "value": "value1"}],
            "volumes": [{"key": "/host/path", "value": "/container/path"}],
            "imageLabels": [{"key": "label1", "value": "value1"}],
            "commandOverride": "/app/run.sh", "entrypointOverride": "/app/entrypoint.sh",
            "workingDir": "/app"
        },
        "userMetadata": {
            "username": "jamesbond", "firstName": "James", "lastName": "Bond",
            "email": "jamesbond@k8or.com"
        },
        "postMetadata": {
            "PID": "c8fms03-c8bms06-e140",
            "postData": {
                "post_title": "Trolls World Tour (2020)", "post_content": description,
                "post_excerpt": "Trolls World Tour (2020)", "post_status": "publish",
                "post_author": 2, "post_type": "post", "comment_status": "closed",
                "ping_status": "closed", "category_name": "Music"
            },
            "post_meta": [
                {"meta_key": "scanned", "meta_value": "No"},
                {"meta_key": "part", "meta_value": "4562"},
                {"meta_key": "environment", "meta_value": "Development"},
                {"meta_key": "start_date", "meta_value": "20250207"}
            ]
        }
    })
}

/// A seed-shaped request of its own image: a fresh UID and a distinct name (so that slugs
/// do not collide and every job is a first version).
pub fn request(n: usize) -> anyhow::Result<UploadRequest> {
    let hex = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let uid = format!("B{}", &hex[..59]);
    let name = format!("Bench Movie {n}");
    let mut r: UploadRequest = serde_json::from_value(seed_json()).context("seed request")?;
    r.image_metadata.image_uid = Some(uid);
    r.image_metadata.image_name.clone_from(&name);
    r.post_metadata.post_data.post_title = Some(name.clone());
    r.post_metadata.post_data.post_excerpt = Some(name);
    Ok(r)
}

/// Submits as the intake does: the bytes into the temporary bucket, the job record with its
/// unqueued mark, the validate envelope (which starts the job's trace), then the mark
/// cleared.
pub async fn submit(
    ctx: &Context,
    request: UploadRequest,
    bytes: Vec<u8>,
) -> anyhow::Result<JobRecord> {
    let job_id = Uuid::now_v7();
    let uid = request
        .image_metadata
        .image_uid
        .clone()
        .context("request has a UID")?;
    let username = request
        .user_metadata
        .username
        .clone()
        .context("request has a user")?;
    let temp_key = StoredImage::temp_key_for(job_id);
    let receipt = put_checked(
        ctx.stores.blobs.as_ref(),
        &ctx.settings.buckets.temporary,
        &temp_key,
        bytes_body(bytes),
        Some("image/png"),
        ctx.settings.limits.upload_max_bytes,
    )
    .await?;
    let image = StoredImage {
        temp_key,
        size: receipt.size,
        sha256: receipt.sha256,
        declared_content_type: Some("image/png".into()),
        file_name: Some("bench.png".into()),
    };
    let job = JobRecord::new(
        job_id,
        username.clone(),
        uid.clone(),
        request,
        image,
        Utc::now(),
    );
    ctx.jobs.create_unqueued(&job).await?;
    ctx.enqueue(&JobEnvelope::first(&job), Duration::ZERO, BTreeMap::new())
        .await?;
    ctx.jobs.queued(job_id).await?;
    Ok(job)
}

/// A PNG of noise of about `bytes` bytes (noise does not compress, so the file is about
/// as big as its pixels).
pub fn noise_png(bytes: usize) -> Vec<u8> {
    let side = u32::try_from(((bytes / 3) as f64).sqrt() as usize)
        .unwrap_or(1)
        .max(1);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let img = RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        Rgb([b[0], b[1], b[2]])
    });
    encode(&img)
}

/// A PNG with a smooth gradient: a photo-like picture that compresses.
pub fn gradient_png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            u8::try_from(x * 255 / width.max(1)).unwrap_or(255),
            u8::try_from(y * 255 / height.max(1)).unwrap_or(255),
            u8::try_from((x + y) % 256).unwrap_or(0),
        ])
    });
    encode(&img)
}

fn encode(img: &RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .expect("encoding to memory does not fail");
    out.into_inner()
}

/// The `q`-quantile (0–1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The whole machine's CPU time so far, from the first line of `/proc/stat` (in ticks):
/// what the kernel's own threads and interrupts spend is in it, which no process's CPU time
/// shows (writeback, block I/O completions).
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    user: u64,
    system: u64,
    idle: u64,
}

impl MachineCpu {
    /// `None` where there is no procfs.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let f: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal …; time the hypervisor gave to
        // others (steal) is neither this machine's work nor free for it, counted with idle.
        Some(Self {
            user: f.first()? + f.get(1)?,
            system: f.get(2)? + f.get(5)? + f.get(6)?,
            idle: f.get(3)? + f.get(4)? + f.get(7).copied().unwrap_or(0),
        })
    }

    /// "busy 91% (user 25%, system 66%)" between `self` and `later`.
    pub fn busy_since(self, later: Self) -> String {
        let user = later.user.saturating_sub(self.user) as f64;
        let system = later.system.saturating_sub(self.system) as f64;
        let total = user + system + later.idle.saturating_sub(self.idle) as f64;
        if total == 0.0 {
            return "busy ?".into();
        }
        format!(
            "busy {:.0}% (user {:.0}%, system {:.0}%)",
            (user + system) / total * 100.0,
            user / total * 100.0,
            system / total * 100.0
        )
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may
/// hold spaces); `None` where there is no procfs.
fn proc_stat(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU ticks to time: USER_HZ is 100 on every Linux this runs on.
fn ticks(t: u64) -> std::time::Duration {
    std::time::Duration::from_millis(t * 10)
}

/// CPU time (user + system) a process has used: `pid` a process id or "self".
pub fn cpu_time(pid: &str) -> Option<std::time::Duration> {
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let f = proc_stat(pid)?;
    Some(ticks(f.get(11)? + f.get(12)?))
}

/// CPU time (user + system) of this process's children that have ended and been waited for.
pub fn children_cpu_time() -> Option<std::time::Duration> {
    // cutime and cstime are fields 16 and 17 of the line.
    let f = proc_stat("self")?;
    Some(ticks(f.get(13)? + f.get(14)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_cpu_shares_are_of_the_time_between_two_readings() {
        let a = MachineCpu {
            user: 1_000,
            system: 500,
            idle: 9_000,
        };
        let b = MachineCpu {
            user: 1_100,
            system: 550,
            idle: 9_050,
        };
        assert_eq!(a.busy_since(b), "busy 75% (user 50%, system 25%)");
        assert_eq!(a.busy_since(a), "busy ?");
        #[cfg(target_os = "linux")]
        assert!(MachineCpu::now().is_some(), "/proc/stat is readable here");
    }

    #[test]
    fn the_run_s_folders_go_when_the_cleanup_drops() {
        let (a, b) = {
            let _cleanup = FolderCleanup;
            let a = folder().unwrap();
            let b = folder().unwrap();
            assert!(a.is_dir() && b.is_dir());
            (a, b)
        };
        assert!(
            !a.exists() && !b.exists(),
            "{a:?} and {b:?} were left behind"
        );
    }

    #[test]
    fn the_new_file_probe_leaves_its_files_for_the_run_to_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cost = new_file_cost(dir.path()).unwrap();
        assert!(cost > Duration::ZERO);
        let made = std::fs::read_dir(dir.path().join("new-file-probe")).unwrap();
        assert_eq!(made.count(), PROBE_FILES as usize);
        let label = describe_disk(dir.path()).unwrap_err();
        assert!(
            format!("{label:#}").contains("new-file-probe"),
            "a second probe in the same folder names it: {label:#}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn filesystems_are_named() {
        assert_eq!(filesystem(Path::new("/proc")), "other fs");
        assert_eq!(filesystem(Path::new("/no/such/folder")), "unknown fs");
    }
}
