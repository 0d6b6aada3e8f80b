//! The Blobs port on a local folder: `<root>/<bucket>/<key>`.
//!
//! An object is written to a temporary file under `<root>/.tmp` (same filesystem), then
//! renamed into place: a reader or a crash sees the whole object or none of it, and a put
//! that returned is on disk. A small object (up to 64 KiB) is made durable by a record in
//! the folder's intent log, in the same transaction as its rename ([`intents`]: one
//! shared SQLite commit instead of syncing its file and folder; a crash of the machine
//! before the next flush is undone by a replay). A larger one is synced before its rename,
//! and its folder after it. A crash mid-put leaves its temporary file, which the next
//! [`FolderBlobs::open`] removes once it is an hour old. A set of objects
//! ([`Blobs::put_many`]) is logged in one commit; without the log, it is written and synced
//! file by file, side by side, then renamed into place, and each folder it went to is
//! synced once: a folder of four files costs one folder sync, not four.
//!
//! The content type is an extended attribute (`user.k8or.content_type`) of the data file
//! itself, set on the temporary file before the rename, so data and type appear together
//! in one rename and an object is one inode. An object put without a type carries the
//! attribute too, holding a single NUL byte (which no HTTP header can carry, so no put may
//! carry it either: [`check_content_type`]), so the attribute alone decides the type of
//! every object written this way.
//!
//! Where the filesystem has no user extended attributes (probed once in
//! [`FolderBlobs::open`]), or when asked for with [`FolderBlobs::open_with_sidecars`], the
//! type lives in a sidecar file `<root>/.meta/<bucket>/<key>` (the only layout of earlier
//! versions), written (temp, sync, rename) just before the data is renamed into place.
//! That layout is not atomic: a crash between the two renames pairs the new type (or a
//! removed type) with the old data. A type too long for an attribute (over 64 KiB on
//! Linux, or over what the filesystem holds) also goes to a sidecar. Reads take the
//! attribute first and the sidecar only when the data file has none, so a folder written
//! in either layout, or in both, reads back right; an object written or moved with an
//! attribute over one that had a sidecar takes the sidecar away. Bucket names cannot start
//! with a dot, so no bucket can collide with `.meta` or `.tmp`.
//!
//! Each operation does its filesystem work in one blocking task (`spawn_blocking`) with
//! `std::fs`: a put whose body fits in 1 MiB is gathered in memory first; a larger one
//! streams in batches of about 1 MiB, one blocking task each.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{future, stream, StreamExt};
use tokio_util::io::ReaderStream;

use crate::store::blobs::{
    check_content_type, check_key, check_objects, BlobError, BlobInfo, Blobs, ByteStream,
    SmallObject,
};

/// Chunk size of object reads; an object up to this size is read in one go.
const READ_CHUNK: usize = 256 * 1024;

/// A put body up to this size is gathered in memory and written in one blocking task.
const SMALL_PUT: usize = 1024 * 1024;

/// A larger body is written in batches of about this size, one blocking task each.
const WRITE_BATCH: usize = 1024 * 1024;

/// The extended attribute holding an object's content type.
pub const CONTENT_TYPE_XATTR: &CStr = c"user.k8or.content_type";

/// The attribute value of an object put without a content type.
const NO_TYPE: &[u8] = b"\0";

/// A temporary file untouched for this long is a crashed put's: [`FolderBlobs::open`]
/// removes it. A put under way writes its file at least every [`WRITE_BATCH`] bytes, and
/// other processes may share the folder (the API and the workers), so only old ones go.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// How often the folder applies its expiry rules while a process runs, as S3 applies a
/// bucket's lifecycle rules about daily.
const LIFECYCLE_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// The embedded object store.
pub struct FolderBlobs {
    inner: Arc<Inner>,
    lifecycle: Arc<Lifecycle>,
}

/// The folder's lifecycle engine: the expiry rules set in this process (days by bucket),
/// applied again every `period` by a task started with the first rule.
struct Lifecycle {
    rules: Mutex<BTreeMap<String, u32>>,
    started: std::sync::Once,
    period: Duration,
}

impl Lifecycle {
    /// No rules yet; once one is set, they are applied every `period`.
    fn every(period: Duration) -> Self {
        Self {
            rules: Mutex::new(BTreeMap::new()),
            started: std::sync::Once::new(),
            period,
        }
    }
}

struct Inner {
    root: PathBuf,
    /// Where small objects are made durable instead of syncing their files (see
    /// [`intents`]); `None` where there is no boot id or types live in sidecars.
    log: Option<IntentLog>,
    /// New objects carry their type in an extended attribute (else in a sidecar).
    write_xattrs: bool,
    /// The filesystem has user extended attributes, so reads look there first.
    read_xattrs: bool,
    /// Objects typed in attributes, in a folder that has sidecars (an older store's): an
    /// object written or moved over one takes the old sidecar away (the attribute would win
    /// anyway; this keeps `.meta` from holding them for ever).
    clear_sidecars: bool,
}

fn io_error(e: io::Error) -> BlobError {
    match e.kind() {
        io::ErrorKind::StorageFull => BlobError::Unavailable(e.to_string()),
        _ => BlobError::Backend(e.to_string()),
    }
}

/// A path that does not exist, as an object: missing, or a file where a folder of the key
/// would be.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// S3's bucket naming rules, which also keep a bucket a single, non-hidden folder.
fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

/// Runs `f` on the blocking pool; a panic in it carries on in the caller.
async fn blocking<T, F>(f: F) -> Result<T, BlobError>
where
    F: FnOnce() -> Result<T, BlobError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(BlobError::Backend(format!("blocking task failed: {e}"))),
    }
}

/// The content type as stored in the attribute.
fn encode_type(content_type: Option<&str>) -> &[u8] {
    content_type.map_or(NO_TYPE, str::as_bytes)
}

fn decode_type(value: Vec<u8>) -> Result<Option<String>, BlobError> {
    if value == NO_TYPE {
        return Ok(None);
    }
    String::from_utf8(value)
        .map(Some)
        .map_err(|_| BlobError::Backend("a content type that is not UTF-8".to_owned()))
}

mod intents;
mod xattr;

use intents::IntentLog;

/// A file that is deleted when dropped unless it was renamed into place: a failed or
/// cancelled write leaves nothing behind.
struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A put that streams: the open temporary file and where it goes.
struct Upload {
    temp: TempFile,
    file: File,
    dest: PathBuf,
    size: u64,
}

/// What `get` opened: a small object read whole, or a file to stream.
enum Opened {
    Whole(Bytes),
    File(File),
}

/// Syncs a folder, making the entries renamed or made in it durable. Errors are ignored:
/// some filesystems cannot sync a folder, and the data itself is already synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes the chunks where they lie, with as few calls as it can (`writev`: no copy into
/// one buffer first).
fn write_chunks(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    if let [one] = chunks {
        return file.write_all(one);
    }
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes `dir` and any missing folders above it, and lists in `made` each folder whose
/// entry is new (to be synced once the object is in place).
fn make_dirs(dir: &Path, made: &mut Vec<PathBuf>) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = dir.parent().ok_or(e)?;
            make_dirs(parent, made)?;
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        made.push(parent.to_owned());
    }
    Ok(())
}

/// Renames the file at `from` to `dest`, then syncs `dest`'s folder (and any folder made
/// for it). `NotFound` if `from` is gone.
fn place(from: &Path, dest: &Path) -> io::Result<()> {
    let mut dirs = Vec::new();
    rename_into(from, dest, &mut dirs)?;
    sync_dirs(&dirs);
    Ok(())
}

/// Renames the file at `from` to `dest`, and adds to `dirs` the folders to sync for it:
/// `dest`'s own, then any made for it, deepest first. Folders are made only when the
/// rename finds one missing. A concurrent delete may prune a folder just made (before the
/// rename, or before the folder below it is made), so it tries again. `NotFound` if
/// `from` is gone.
fn rename_into(from: &Path, dest: &Path, dirs: &mut Vec<PathBuf>) -> io::Result<()> {
    let parent = dest.parent().expect("an object path has a parent");
    let mut made = Vec::new();
    let mut attempts = 0;
    loop {
        let missing = match fs::rename(from, dest) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => e,
            Err(e) => return Err(e),
        };
        // The same error when the source is gone: no folder made would help.
        if attempts == 10 || fs::symlink_metadata(from).is_err() {
            return Err(missing);
        }
        attempts += 1;
        match make_dirs(parent, &mut made) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    dirs.push(parent.to_owned());
    made.dedup();
    dirs.extend(made.into_iter().rev());
    Ok(())
}

/// Syncs the files at `paths` that exist, then their folders: after a failed commit of
/// the intent log, whose transaction may have renamed them into place unsynced, so that
/// none is left torn by a crash of the machine, as no unlogged put leaves one. Best
/// effort: a file gone meanwhile has nothing to sync.
fn settle(paths: impl IntoIterator<Item = PathBuf>) {
    let mut dirs = Vec::new();
    for path in paths {
        if let Ok(file) = File::open(&path) {
            let _ = file.sync_all();
        }
        dirs.extend(path.parent().map(Path::to_owned));
    }
    sync_dirs(&dirs);
}

/// Syncs each of `dirs` once, in order.
fn sync_dirs(dirs: &[PathBuf]) {
    for (i, dir) in dirs.iter().enumerate() {
        if !dirs[..i].contains(dir) {
            sync_dir(dir);
        }
    }
}

/// Removes the temporary files in `tmp` last written before `cutoff` (left by a put that
/// crashed before its rename); returns how many. Errors skip a file: the next open retries.
fn sweep_temps(tmp: &Path, cutoff: SystemTime) -> usize {
    let Ok(entries) = fs::read_dir(tmp) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at < cutoff)
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// Removes a file; `Ok(false)` if there was none.
fn remove_if_present(path: &Path) -> Result<bool, BlobError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if is_missing(&e) => Ok(false),
        Err(e) => Err(io_error(e)),
    }
}

/// Removes folders left empty under `stop` after a delete, so deleted prefixes vanish as
/// they do in S3.
fn prune(mut dir: PathBuf, stop: &Path) {
    while dir != stop && dir.starts_with(stop) {
        if fs::remove_dir(&dir).is_err() || !dir.pop() {
            break;
        }
    }
}

impl Inner {
    /// Whether a file in this store can carry the content-type attribute.
    fn probe_xattrs(&self) -> io::Result<bool> {
        let (_temp, file) = self.create_temp()?;
        match xattr::set(&file, b"probe").and_then(|()| xattr::get(&file)) {
            Ok(Some(v)) if v == b"probe" => Ok(true),
            Ok(_) => Ok(false),
            Err(e) if xattr::unsupported(&e) => Ok(false),
            Err(e) => {
                tracing::warn!(
                    root = %self.root.display(),
                    error = %e,
                    "extended attributes failed; keeping content types in sidecar files"
                );
                Ok(false)
            }
        }
    }

    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, BlobError> {
        let dir = self.root.join(bucket);
        if valid_bucket(bucket) && fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
            Ok(dir)
        } else {
            Err(BlobError::NoSuchBucket(bucket.to_owned()))
        }
    }

    /// The data path of an object in an existing bucket (the key is already checked).
    fn data_path(&self, bucket: &str, key: &str) -> Result<PathBuf, BlobError> {
        Ok(self.bucket_dir(bucket)?.join(key))
    }

    fn meta_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(".meta").join(bucket)
    }

    fn meta_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.meta_dir(bucket).join(key)
    }

    fn create_temp(&self) -> io::Result<(TempFile, File)> {
        let path = self
            .root
            .join(".tmp")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((TempFile { path, kept: false }, file))
    }

    /// Renames a synced temporary file into place, then syncs its folder (and any folder
    /// made for it). Folders are made only when the rename finds one missing. A concurrent
    /// delete may prune a folder just made (before the rename, or before the folder below
    /// it is made), so it tries again.
    fn install(&self, mut temp: TempFile, dest: &Path) -> Result<(), BlobError> {
        place(&temp.path, dest).map_err(io_error)?;
        temp.kept = true;
        Ok(())
    }

    /// Renames a synced temporary file into place as the object `bucket/key`, then syncs
    /// its folder (and any made for it). With the intent log, the rename is in the log's
    /// transaction that removes the object's record: the record's older bytes must not
    /// come back in a replay.
    fn install_object(
        &self,
        temp: TempFile,
        dest: &Path,
        bucket: &str,
        key: &str,
    ) -> Result<(), BlobError> {
        let Some(log) = &self.log else {
            return self.install(temp, dest);
        };
        let (path, bucket, key) = (dest.to_owned(), bucket.to_owned(), key.to_owned());
        let committed = log.commit(move |conn| {
            let mut temp = temp;
            let mut dirs = Vec::new();
            rename_into(&temp.path, &path, &mut dirs).map_err(io_error)?;
            temp.kept = true;
            intents::forget(conn, &bucket, &key)?;
            Ok(dirs)
        });
        match committed {
            Ok(dirs) => {
                sync_dirs(&dirs);
                Ok(())
            }
            Err(e) => {
                settle([dest.to_owned()]);
                Err(e)
            }
        }
    }

    /// The intent log, if these objects may be logged (each small, with a short type).
    fn log_for(&self, objects: &[SmallObject]) -> Option<&IntentLog> {
        self.log.as_ref().filter(|_| {
            objects.iter().all(|o| {
                o.body.len() <= intents::LOGGED_MAX
                    && o.content_type.as_ref().map_or(0, String::len) <= intents::LOGGED_TYPE_MAX
            })
        })
    }

    /// Puts small objects through the intent log: each written to a temporary file and
    /// typed, unsynced, then all renamed into place and recorded in one commit of the log.
    fn put_logged(
        &self,
        log: &IntentLog,
        bucket: &str,
        objects: Vec<SmallObject>,
    ) -> Result<(), BlobError> {
        let root = self.bucket_dir(bucket)?;
        let keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
        let mut written = Vec::with_capacity(objects.len());
        for object in objects {
            let (temp, mut file) = self.create_temp().map_err(io_error)?;
            file.write_all(&object.body).map_err(io_error)?;
            xattr::set(&file, encode_type(object.content_type.as_deref())).map_err(io_error)?;
            written.push((object, temp));
        }
        let (bucket_name, dir) = (bucket.to_owned(), root.clone());
        let committed = log.commit(move |conn| {
            for (object, mut temp) in written {
                rename_into(&temp.path, &dir.join(&object.key), &mut Vec::new())
                    .map_err(io_error)?;
                temp.kept = true;
                let content_type = object.content_type.as_deref();
                intents::record(conn, &bucket_name, &object.key, content_type, &object.body)?;
            }
            Ok(())
        });
        if let Err(e) = committed {
            settle(keys.iter().map(|key| root.join(key)));
            return Err(e);
        }
        keys.iter()
            .try_for_each(|key| self.drop_stale_sidecar(bucket, key))
    }

    /// Writes or removes the sidecar of an object.
    fn write_sidecar(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<(), BlobError> {
        let meta = self.meta_path(bucket, key);
        let Some(ct) = content_type else {
            return remove_if_present(&meta).map(drop);
        };
        let (temp, mut file) = self.create_temp().map_err(io_error)?;
        file.write_all(ct.as_bytes()).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        drop(file);
        self.install(temp, &meta)
    }

    /// Tags a written temporary file with its type, syncs it and renames it into place.
    fn finish(
        &self,
        temp: TempFile,
        file: File,
        dest: &Path,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<(), BlobError> {
        let sidecar = self.seal(file, bucket, key, content_type)?;
        self.install_object(temp, dest, bucket, key)?;
        if !sidecar {
            self.drop_stale_sidecar(bucket, key)?;
        }
        Ok(())
    }

    /// Tags a written temporary file with its type (in its attribute, else in a sidecar
    /// written now) and syncs it, ready to be renamed into place; `true` if the type went
    /// to a sidecar.
    fn seal(
        &self,
        file: File,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<bool, BlobError> {
        let mut sidecar = !self.write_xattrs;
        if self.write_xattrs {
            match xattr::set(&file, encode_type(content_type)) {
                Ok(()) => {}
                Err(e) if xattr::too_big(&e) => sidecar = true,
                Err(e) => return Err(io_error(e)),
            }
        }
        file.sync_all().map_err(io_error)?;
        drop(file);
        if sidecar {
            self.write_sidecar(bucket, key, content_type)?;
        }
        Ok(sidecar)
    }

    /// Writes one object of a set to a temporary file, tagged and synced, ready for
    /// [`place_all`](Self::place_all); with it, whether its type went to a sidecar.
    fn prepare(&self, bucket: &str, object: &SmallObject) -> Result<(TempFile, bool), BlobError> {
        self.bucket_dir(bucket)?;
        let (temp, mut file) = self.create_temp().map_err(io_error)?;
        file.write_all(&object.body).map_err(io_error)?;
        let sidecar = self.seal(file, bucket, &object.key, object.content_type.as_deref())?;
        Ok((temp, sidecar))
    }

    /// Renames a set's prepared files into place, then syncs each folder they went to (and
    /// any folder made for them) once: a set of files in one folder costs one folder sync,
    /// not one each. The caller hears `Ok` only once every object and folder is synced.
    fn place_all(
        &self,
        bucket: &str,
        prepared: Vec<(SmallObject, TempFile, bool)>,
    ) -> Result<(), BlobError> {
        let root = self.bucket_dir(bucket)?;
        let mut dirs = Vec::new();
        let mut placed = Vec::with_capacity(prepared.len());
        for (object, mut temp, sidecar) in prepared {
            rename_into(&temp.path, &root.join(&object.key), &mut dirs).map_err(io_error)?;
            temp.kept = true;
            placed.push((object.key, sidecar));
        }
        sync_dirs(&dirs);
        for (key, sidecar) in placed {
            if !sidecar {
                self.drop_stale_sidecar(bucket, &key)?;
            }
        }
        Ok(())
    }

    /// Removes the sidecar of an object whose type is in its attribute now.
    fn drop_stale_sidecar(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        if self.clear_sidecars {
            self.remove_sidecar(bucket, key)?;
        }
        Ok(())
    }

    /// Removes an object's sidecar if it has one, and the folders it leaves empty.
    fn remove_sidecar(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let meta = self.meta_path(bucket, key);
        if remove_if_present(&meta)? {
            if let Some(parent) = meta.parent() {
                prune(parent.to_owned(), &self.meta_dir(bucket));
            }
        }
        Ok(())
    }

    /// The type of an open object: its attribute, else its sidecar.
    fn read_type(&self, file: &File, bucket: &str, key: &str) -> Result<Option<String>, BlobError> {
        if self.read_xattrs {
            match xattr::get(file) {
                Ok(Some(value)) => return decode_type(value),
                Ok(None) => {}
                Err(e) if xattr::unsupported(&e) => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        match fs::read(self.meta_path(bucket, key)) {
            Ok(value) => String::from_utf8(value)
                .map(Some)
                .map_err(|_| BlobError::Backend("a content type that is not UTF-8".to_owned())),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    /// Opens an object's data file; `None` if there is no object.
    fn open_object(&self, bucket: &str, key: &str) -> Result<Option<(File, u64)>, BlobError> {
        let path = self.data_path(bucket, key)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        let meta = file.metadata().map_err(io_error)?;
        Ok(meta.is_file().then_some((file, meta.len())))
    }

    fn ensure_bucket(&self, bucket: &str) -> Result<bool, BlobError> {
        let dir = self.root.join(bucket);
        if fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Ok(false);
        }
        if !self.write_xattrs {
            fs::create_dir_all(self.meta_dir(bucket)).map_err(io_error)?;
        }
        match fs::create_dir(&dir) {
            Ok(()) => {
                sync_dir(&self.root);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_error(e)),
        }
    }

    fn put_whole(
        &self,
        bucket: &str,
        key: &str,
        chunks: &[Bytes],
        content_type: Option<&str>,
    ) -> Result<u64, BlobError> {
        let size = chunks.iter().map(|c| c.len() as u64).sum();
        let object = || SmallObject {
            key: key.to_owned(),
            body: join(chunks),
            content_type: content_type.map(str::to_owned),
        };
        if size <= intents::LOGGED_MAX as u64 {
            let objects = vec![object()];
            if let Some(log) = self.log_for(&objects) {
                self.put_logged(log, bucket, objects)?;
                return Ok(size);
            }
        }
        let dest = self.data_path(bucket, key)?;
        let (temp, mut file) = self.create_temp().map_err(io_error)?;
        write_chunks(&mut file, chunks).map_err(io_error)?;
        self.finish(temp, file, &dest, bucket, key, content_type)?;
        Ok(size)
    }

    fn start_upload(&self, bucket: &str, key: &str, chunks: &[Bytes]) -> Result<Upload, BlobError> {
        let dest = self.data_path(bucket, key)?;
        let (temp, file) = self.create_temp().map_err(io_error)?;
        let mut upload = Upload {
            temp,
            file,
            dest,
            size: 0,
        };
        upload.write(chunks)?;
        Ok(upload)
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Opened, BlobError> {
        let (mut file, size) = self
            .open_object(bucket, key)?
            .ok_or_else(|| BlobError::not_found(bucket, key))?;
        if size > READ_CHUNK as u64 {
            return Ok(Opened::File(file));
        }
        let mut data = Vec::with_capacity(size as usize);
        file.read_to_end(&mut data).map_err(io_error)?;
        Ok(Opened::Whole(data.into()))
    }

    fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobInfo>, BlobError> {
        let Some((file, size)) = self.open_object(bucket, key)? else {
            return Ok(None);
        };
        // Read from the same open file: a concurrent overwrite cannot pair this size
        // with the next object's type.
        let content_type = self.read_type(&file, bucket, key)?;
        Ok(Some(BlobInfo { size, content_type }))
    }

    fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), BlobError> {
        let src = self.data_path(src_bucket, src_key)?;
        let dst = self.data_path(dst_bucket, dst_key)?;
        if src == dst {
            return Ok(());
        }
        let (mut from, _) = self
            .open_object(src_bucket, src_key)?
            .ok_or_else(|| BlobError::not_found(src_bucket, src_key))?;
        let content_type = self.read_type(&from, src_bucket, src_key)?;
        // A byte copy (copy_file_range), never a hard link: the two objects must not share
        // an inode, or a later change to one would show in the other.
        let (temp, mut to) = self.create_temp().map_err(io_error)?;
        io::copy(&mut from, &mut to).map_err(io_error)?;
        drop(from);
        self.finish(temp, to, &dst, dst_bucket, dst_key, content_type.as_deref())
    }

    /// Moves an object with one rename: the inode, and with it the type in its attribute,
    /// goes to the destination, so the object is never in both places or neither, and no
    /// byte is copied (nor an inode made and another freed). An object whose type is in a
    /// sidecar (that layout, an older folder, an over-long type), and a move across
    /// filesystems, are copied and deleted instead. The source folder is not synced: after
    /// a crash the source may show again beside the destination, as a copy would leave it.
    fn rename(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), BlobError> {
        let src = self.data_path(src_bucket, src_key)?;
        let dst = self.data_path(dst_bucket, dst_key)?;
        let (file, _) = self
            .open_object(src_bucket, src_key)?
            .ok_or_else(|| BlobError::not_found(src_bucket, src_key))?;
        if src == dst {
            return Ok(());
        }
        let typed_inline = self.write_xattrs
            && match xattr::get(&file) {
                Ok(value) => value.is_some(),
                Err(e) if xattr::unsupported(&e) => false,
                Err(e) => return Err(io_error(e)),
            };
        drop(file);
        if typed_inline {
            let names = [src_bucket, src_key, dst_bucket, dst_key];
            match self.move_file(&src, &dst, names) {
                Ok(()) => {
                    if let Some(parent) = src.parent() {
                        prune(parent.to_owned(), &self.root.join(src_bucket));
                    }
                    self.drop_stale_sidecar(src_bucket, src_key)?;
                    return self.drop_stale_sidecar(dst_bucket, dst_key);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(BlobError::not_found(src_bucket, src_key))
                }
                Err(e) if e.kind() != io::ErrorKind::CrossesDevices => return Err(io_error(e)),
                Err(_) => {}
            }
        }
        self.copy(src_bucket, src_key, dst_bucket, dst_key)?;
        self.delete(src_bucket, src_key)
    }

    /// Deletes the bucket's objects last written before `cutoff` (as S3 counts an
    /// object's age from its creation: a put or a copy writes it anew); returns how many.
    fn expire_objects(&self, bucket: &str, cutoff: SystemTime) -> Result<usize, BlobError> {
        let bucket_dir = self.bucket_dir(bucket)?;
        let mut expired = 0;
        let mut folders = vec![bucket_dir.clone()];
        while let Some(folder) = folders.pop() {
            let Ok(entries) = fs::read_dir(&folder) else {
                continue; // pruned meanwhile
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => folders.push(path),
                    Ok(t) if t.is_file() => {
                        let old = entry
                            .metadata()
                            .and_then(|m| m.modified())
                            .is_ok_and(|at| at < cutoff);
                        let key = path
                            .strip_prefix(&bucket_dir)
                            .ok()
                            .and_then(Path::to_str)
                            .map(str::to_owned);
                        if let (true, Some(key)) = (old, key) {
                            self.delete(bucket, &key)?;
                            expired += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(expired)
    }

    /// Renames an object's file, and syncs its new folder (and any made for it), or with
    /// the intent log carries the object's record to its new name, if it has one (then the
    /// record stands for the name, and no folder is synced).
    fn move_file(&self, src: &Path, dst: &Path, names: [&str; 4]) -> io::Result<()> {
        let Some(log) = &self.log else {
            return place(src, dst);
        };
        let (src, path) = (src.to_owned(), dst.to_owned());
        let names = names.map(str::to_owned);
        let moved = log.commit(move |conn| {
            let mut dirs = Vec::new();
            if let Err(e) = rename_into(&src, &path, &mut dirs) {
                return Ok(Err(e));
            }
            let carried = intents::carry(conn, names.each_ref().map(String::as_str))?;
            Ok(Ok(if carried { Vec::new() } else { dirs }))
        });
        let moved = moved.inspect_err(|_| settle([dst.to_owned()]));
        let dirs = moved.map_err(io::Error::other)??;
        sync_dirs(&dirs);
        Ok(())
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let bucket_dir = self.bucket_dir(bucket)?;
        let data = bucket_dir.join(key);
        match &self.log {
            // With its record, in one commit: a replay must not bring the object back.
            Some(log) => {
                let (bucket, key, data) = (bucket.to_owned(), key.to_owned(), data.clone());
                log.commit(move |conn| {
                    intents::forget(conn, &bucket, &key)?;
                    remove_if_present(&data).map(drop)
                })?;
            }
            None => {
                remove_if_present(&data)?;
            }
        }
        if let Some(parent) = data.parent() {
            prune(parent.to_owned(), &bucket_dir);
        }
        // A sidecar, from the sidecar layout or an older data folder.
        self.remove_sidecar(bucket, key)
    }
}

impl Upload {
    fn write(&mut self, chunks: &[Bytes]) -> Result<(), BlobError> {
        write_chunks(&mut self.file, chunks).map_err(io_error)?;
        self.size += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        Ok(())
    }
}

/// The chunks as one buffer (no copy for one chunk).
fn join(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [one] => one.clone(),
        _ => chunks.concat().into(),
    }
}

/// Reads chunks from the body until it ends or `limit` bytes are held; `true` if it ended.
async fn gather(
    body: &mut ByteStream,
    chunks: &mut Vec<Bytes>,
    limit: usize,
) -> Result<bool, BlobError> {
    let mut held = 0;
    while held <= limit {
        match body.next().await {
            None => return Ok(true),
            Some(Ok(chunk)) => {
                held += chunk.len();
                chunks.push(chunk);
            }
            Some(Err(e)) => return Err(BlobError::Body(e)),
        }
    }
    Ok(false)
}

impl FolderBlobs {
    /// Uses `root` as the store, creating it if missing. Content types go in extended
    /// attributes where the filesystem has them, else in sidecar files.
    pub async fn open(root: &Path) -> io::Result<Self> {
        let log = intents::boot_id().map(|boot| (boot, intents::FLUSH_DELAY));
        Self::open_as(root, false, log).await
    }

    /// As [`open`](Self::open), as if in boot `boot`, flushing the intent log `flush_delay`
    /// after a write: a test's restart of the machine.
    #[cfg(test)]
    async fn open_in_boot(root: &Path, boot: &str, flush_delay: Duration) -> io::Result<Self> {
        Self::open_as(root, false, Some((boot.to_owned(), flush_delay))).await
    }

    /// As [`open`](Self::open), but always writes content types to sidecar files (the
    /// layout of filesystems without extended attributes).
    pub async fn open_with_sidecars(root: &Path) -> io::Result<Self> {
        Self::open_as(root, true, None).await
    }

    /// Runs an operation on two objects (`[src_bucket, src_key, dst_bucket, dst_key]`),
    /// both keys checked, off the runtime's threads.
    async fn between(
        &self,
        names: [&str; 4],
        op: fn(&Inner, &str, &str, &str, &str) -> Result<(), BlobError>,
    ) -> Result<(), BlobError> {
        check_key(names[1])?;
        check_key(names[3])?;
        let inner = self.inner.clone();
        let [sb, sk, db, dk] = names.map(str::to_owned);
        blocking(move || op(&inner, &sb, &sk, &db, &dk)).await
    }

    /// Whether new objects carry their content type in an extended attribute.
    pub fn uses_xattrs(&self) -> bool {
        self.inner.write_xattrs
    }

    /// Opens the folder; with `log` (this boot's id, and the flush delay), and types in
    /// attributes, small objects go through the intent log.
    async fn open_as(
        root: &Path,
        sidecars: bool,
        log: Option<(String, Duration)>,
    ) -> io::Result<Self> {
        let root = root.to_owned();
        let inner = tokio::task::spawn_blocking(move || {
            let tmp = root.join(".tmp");
            fs::create_dir_all(&tmp)?;
            let swept = sweep_temps(&tmp, SystemTime::now() - STALE_TEMP);
            if swept > 0 {
                tracing::info!(
                    root = %root.display(),
                    swept,
                    "removed temporary files of puts that never finished"
                );
            }
            let mut inner = Inner {
                root,
                log: None,
                write_xattrs: false,
                read_xattrs: false,
                clear_sidecars: false,
            };
            let xattrs = inner.probe_xattrs()?;
            inner.read_xattrs = xattrs;
            inner.write_xattrs = xattrs && !sidecars;
            inner.clear_sidecars = inner.write_xattrs && inner.root.join(".meta").exists();
            if !inner.write_xattrs {
                fs::create_dir_all(inner.root.join(".meta"))?;
            }
            if let (true, Some((boot, flush_delay))) = (inner.write_xattrs, log) {
                // Replayed objects are put as unlogged ones are: each file and folder synced.
                let replay = |r: intents::Record| {
                    let body = [r.body];
                    inner
                        .put_whole(&r.bucket, &r.key, &body, r.content_type.as_deref())
                        .map(drop)
                };
                let log = IntentLog::open(&inner.root, &boot, flush_delay, replay)
                    .map_err(io::Error::other)?;
                inner.log = Some(log);
            }
            Ok::<_, io::Error>(inner)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Self {
            inner: Arc::new(inner),
            lifecycle: Arc::new(Lifecycle::every(LIFECYCLE_PERIOD)),
        })
    }

    /// Sets the rule of `bucket` for the lifecycle task, and starts that task the first
    /// time, on the caller's runtime.
    fn keep_rule(&self, bucket: &str, days: u32) {
        let lifecycle = &self.lifecycle;
        lifecycle
            .rules
            .lock()
            .expect("lifecycle rules lock")
            .insert(bucket.to_owned(), days);
        lifecycle.started.call_once(|| {
            let (inner, rules) = (Arc::downgrade(&self.inner), Arc::downgrade(lifecycle));
            tokio::spawn(apply_rules(inner, rules, lifecycle.period));
        });
    }
}

/// Deletes the objects of `bucket` older than `days` days; returns how many.
async fn expire(inner: Arc<Inner>, bucket: &str, days: u32) -> Result<usize, BlobError> {
    let age = Duration::from_secs(u64::from(days) * 24 * 3600);
    let cutoff = SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let name = bucket.to_owned();
    let expired = blocking(move || inner.expire_objects(&name, cutoff)).await?;
    if expired > 0 {
        tracing::info!(bucket, expired, days, "deleted objects past their expiry");
    }
    Ok(expired)
}

/// The lifecycle task: every `period`, applies each rule; ends once the store is dropped.
/// A failed sweep is logged and tried again the next period.
async fn apply_rules(inner: Weak<Inner>, lifecycle: Weak<Lifecycle>, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (Some(inner), Some(lifecycle)) = (inner.upgrade(), lifecycle.upgrade()) else {
            return;
        };
        let rules = lifecycle
            .rules
            .lock()
            .expect("lifecycle rules lock")
            .clone();
        drop(lifecycle);
        for (bucket, days) in rules {
            if let Err(error) = expire(inner.clone(), &bucket, days).await {
                tracing::warn!(%bucket, days, %error, "expiring old objects failed; trying again next period");
            }
        }
    }
}

#[async_trait]
impl Blobs for FolderBlobs {
    async fn ensure_bucket(&self, bucket: &str) -> Result<bool, BlobError> {
        if !valid_bucket(bucket) {
            return Err(BlobError::Backend(format!(
                "invalid bucket name {bucket:?}: 3 to 63 lowercase letters, digits, '-' or '.'"
            )));
        }
        let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
        blocking(move || inner.ensure_bucket(&bucket)).await
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        mut body: ByteStream,
        content_type: Option<&str>,
    ) -> Result<u64, BlobError> {
        check_key(key)?;
        check_content_type(content_type)?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let content_type = content_type.map(str::to_owned);
        let mut chunks = Vec::new();
        if gather(&mut body, &mut chunks, SMALL_PUT).await? {
            let inner = self.inner.clone();
            return blocking(move || {
                inner.put_whole(&bucket, &key, &chunks, content_type.as_deref())
            })
            .await;
        }
        let mut upload = {
            let (inner, bucket, key) = (self.inner.clone(), bucket.clone(), key.clone());
            blocking(move || inner.start_upload(&bucket, &key, &chunks)).await?
        };
        // Each batch is written while the next one arrives (and is hashed on its way, by a
        // metered body): the disk and the network overlap instead of taking turns.
        let mut pending: Vec<Bytes> = Vec::new();
        loop {
            let mut batch = Vec::new();
            let to_write = std::mem::take(&mut pending);
            let (gathered, written) = tokio::join!(
                gather(&mut body, &mut batch, WRITE_BATCH),
                blocking(move || {
                    let mut upload = upload;
                    upload.write(&to_write)?;
                    Ok(upload)
                }),
            );
            let written = written?;
            match gathered {
                Ok(ended) => {
                    upload = written;
                    pending = batch;
                    if ended {
                        break;
                    }
                }
                Err(e) => {
                    // The temporary file goes with the upload, off the runtime's threads.
                    let _ = tokio::task::spawn_blocking(move || drop(written)).await;
                    return Err(e);
                }
            }
        }
        let inner = self.inner.clone();
        blocking(move || {
            let mut upload = upload;
            upload.write(&pending)?;
            let Upload {
                temp,
                file,
                dest,
                size,
            } = upload;
            inner.finish(temp, file, &dest, &bucket, &key, content_type.as_deref())?;
            Ok(size)
        })
        .await
    }

    /// Each file is written and synced in a blocking task of its own, so that their syncs
    /// overlap as separate puts' would; then one task renames them all and syncs each
    /// folder once.
    async fn put_many(&self, bucket: &str, objects: Vec<SmallObject>) -> Result<(), BlobError> {
        check_objects(&objects)?;
        if self.inner.log_for(&objects).is_some() {
            let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
            return blocking(move || {
                let log = inner.log_for(&objects).expect("checked above");
                inner.put_logged(log, &bucket, objects)
            })
            .await;
        }
        let writes = objects.into_iter().map(|object| {
            let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
            blocking(move || {
                let (temp, sidecar) = inner.prepare(&bucket, &object)?;
                Ok((object, temp, sidecar))
            })
        });
        let (prepared, failed): (Vec<_>, Vec<_>) = future::join_all(writes)
            .await
            .into_iter()
            .partition(Result::is_ok);
        if let Some(Err(e)) = failed.into_iter().next() {
            // The files written go (deleted on drop), off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || drop(prepared)).await;
            return Err(e);
        }
        let prepared = prepared.into_iter().flatten().collect();
        let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
        blocking(move || inner.place_all(&bucket, prepared)).await
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<ByteStream, BlobError> {
        check_key(key)?;
        let (inner, bucket, key) = (self.inner.clone(), bucket.to_owned(), key.to_owned());
        match blocking(move || inner.get(&bucket, &key)).await? {
            Opened::Whole(data) if data.is_empty() => Ok(Box::pin(stream::empty())),
            Opened::Whole(data) => Ok(Box::pin(stream::once(future::ready(Ok(data))))),
            Opened::File(f) => Ok(Box::pin(ReaderStream::with_capacity(
                tokio::fs::File::from_std(f),
                READ_CHUNK,
            ))),
        }
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobInfo>, BlobError> {
        check_key(key)?;
        let (inner, bucket, key) = (self.inner.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || inner.head(&bucket, &key)).await
    }

    async fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), BlobError> {
        self.between([src_bucket, src_key, dst_bucket, dst_key], Inner::copy)
            .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        check_key(key)?;
        let (inner, bucket, key) = (self.inner.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || inner.delete(&bucket, &key)).await
    }

    async fn rename(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), BlobError> {
        self.between([src_bucket, src_key, dst_bucket, dst_key], Inner::rename)
            .await
    }

    /// The objects over the age go now, and again every day while this process runs
    /// (see the trait).
    async fn expire_objects(&self, bucket: &str, days: u32) -> Result<(), BlobError> {
        expire(self.inner.clone(), bucket, days).await?;
        self.keep_rule(bucket, days);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blobs::{bytes_body, read_all};
    use futures::TryStreamExt;

    #[test]
    fn bucket_names_follow_s3() {
        for good in ["abc", "app-image-1206-bkt-k8d-aws", "a.b.c"] {
            assert!(valid_bucket(good), "{good}");
        }
        for bad in [
            "ab", ".tmp", ".meta", "Upper", "a/b", "a..b", "-ab", "ab-", "a_b",
        ] {
            assert!(!valid_bucket(bad), "{bad}");
        }
    }

    async fn open(root: &Path, sidecars: bool) -> FolderBlobs {
        if sidecars {
            FolderBlobs::open_with_sidecars(root).await.unwrap()
        } else {
            FolderBlobs::open(root).await.unwrap()
        }
    }

    /// Whether files under `dir` take user extended attributes, asked of the filesystem
    /// directly.
    fn fs_has_xattrs(dir: &Path) -> bool {
        let path = dir.join("xattr-check");
        let file = File::create(&path).unwrap();
        let ok = xattr::set(&file, b"x").is_ok();
        fs::remove_file(path).unwrap();
        ok
    }

    fn type_attr(path: &Path) -> Option<Vec<u8>> {
        xattr::get(&File::open(path).unwrap()).unwrap()
    }

    /// The content type `head` reports for an object of bucket `bkt` that must exist.
    async fn ct(b: &FolderBlobs, key: &str) -> Option<String> {
        b.head("bkt", key).await.unwrap().unwrap().content_type
    }

    fn temp_leftovers(root: &Path) -> usize {
        fs::read_dir(root.join(".tmp")).unwrap().count()
    }

    /// Objects written before the expiry go, with their sidecars and emptied folders;
    /// younger ones stay, in either layout.
    #[tokio::test]
    async fn expiry_deletes_only_the_objects_over_the_age() {
        for sidecars in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let b = open(dir.path(), sidecars).await;
            b.ensure_bucket("bkt").await.unwrap();
            for key in ["old", "deep/er/old", "young", "deep/young"] {
                b.put("bkt", key, bytes_body(key), Some("text/plain"))
                    .await
                    .unwrap();
            }
            for key in ["old", "deep/er/old"] {
                age(dir.path(), key, 3);
            }
            b.expire_objects("bkt", 2).await.unwrap();
            for key in ["old", "deep/er/old"] {
                assert_eq!(b.head("bkt", key).await.unwrap(), None, "{key}");
                assert!(!b.inner.meta_path("bkt", key).exists(), "{key}'s sidecar");
            }
            assert!(
                !dir.path().join("bkt/deep/er").exists(),
                "emptied folder pruned"
            );
            for key in ["young", "deep/young"] {
                assert_eq!(read_all(&b, "bkt", key).await.unwrap(), key.as_bytes());
                assert_eq!(ct(&b, key).await.as_deref(), Some("text/plain"));
            }
            b.expire_objects("bkt", 4).await.unwrap();
            assert_eq!(read_all(&b, "bkt", "young").await.unwrap(), b"young");
        }
    }

    #[tokio::test]
    async fn open_removes_only_stale_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(".tmp");
        fs::create_dir_all(&tmp).unwrap();
        let stale = File::create(tmp.join("crashed")).unwrap();
        stale
            .set_modified(SystemTime::now() - STALE_TEMP - Duration::from_secs(60))
            .unwrap();
        drop(stale);
        fs::write(tmp.join("under-way"), b"x").unwrap();
        open(dir.path(), false).await;
        assert!(!tmp.join("crashed").exists());
        assert!(tmp.join("under-way").exists());
        assert_eq!(temp_leftovers(dir.path()), 1);
    }

    fn chunked(data: &[u8]) -> ByteStream {
        let chunks: Vec<io::Result<Bytes>> = data
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(stream::iter(chunks))
    }

    #[cfg(unix)]
    async fn copies_do_not_share_the_inode_and_deletes_prune_folders(sidecars: bool) {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path(), sidecars).await;
        b.ensure_bucket("one").await.unwrap();
        b.ensure_bucket("two").await.unwrap();
        b.put("one", "a/b/c.bin", bytes_body("abc"), Some("text/plain"))
            .await
            .unwrap();
        b.copy("one", "a/b/c.bin", "two", "x.bin").await.unwrap();
        let src = fs::metadata(dir.path().join("one/a/b/c.bin")).unwrap();
        let dst = fs::metadata(dir.path().join("two/x.bin")).unwrap();
        assert_ne!(src.ino(), dst.ino());
        assert_eq!(src.nlink(), 1);
        assert_eq!(read_all(&b, "two", "x.bin").await.unwrap(), b"abc");
        let info = b.head("two", "x.bin").await.unwrap().unwrap();
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));
        b.delete("one", "a/b/c.bin").await.unwrap();
        assert!(
            !dir.path().join("one/a").exists(),
            "empty folders are pruned"
        );
        assert!(
            !dir.path().join(".meta/one/a").exists(),
            "empty sidecar folders are pruned"
        );
        assert!(dir.path().join("one").is_dir(), "the bucket stays");
        assert_eq!(temp_leftovers(dir.path()), 0);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn copies_do_not_share_the_inode_and_deletes_prune_folders_xattrs() {
        copies_do_not_share_the_inode_and_deletes_prune_folders(false).await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn copies_do_not_share_the_inode_and_deletes_prune_folders_sidecars() {
        copies_do_not_share_the_inode_and_deletes_prune_folders(true).await;
    }

    /// Where the filesystem has user xattrs, an object is one file carrying its type, and
    /// nothing is written under `.meta`.
    #[tokio::test]
    async fn the_type_rides_on_the_data_file_where_xattrs_work() {
        let dir = tempfile::tempdir().unwrap();
        let supported = fs_has_xattrs(dir.path());
        let b = open(dir.path(), false).await;
        assert_eq!(b.uses_xattrs(), supported);
        if !supported {
            eprintln!("no user xattrs on this filesystem: the sidecar layout is in use");
            return;
        }
        b.ensure_bucket("bkt").await.unwrap();
        b.put("bkt", "k/a.png", bytes_body("png"), Some("image/png"))
            .await
            .unwrap();
        b.put("bkt", "k/none.bin", bytes_body("x"), None)
            .await
            .unwrap();
        b.put("bkt", "k/empty.txt", bytes_body("y"), Some(""))
            .await
            .unwrap();
        let data = dir.path().join("bkt/k");
        assert_eq!(
            type_attr(&data.join("a.png")).as_deref(),
            Some(&b"image/png"[..])
        );
        assert_eq!(type_attr(&data.join("none.bin")).as_deref(), Some(NO_TYPE));
        assert_eq!(
            type_attr(&data.join("empty.txt")).as_deref(),
            Some(&b""[..])
        );
        assert!(!dir.path().join(".meta").exists(), "no sidecars");
        assert_eq!(ct(&b, "k/a.png").await.as_deref(), Some("image/png"));
        assert_eq!(ct(&b, "k/none.bin").await, None);
        assert_eq!(ct(&b, "k/empty.txt").await.as_deref(), Some(""));
        assert_eq!(temp_leftovers(dir.path()), 0);
    }

    /// A folder written with sidecars (an older store, or a forced sidecar layout) reads
    /// back in the attribute layout, and the other way round; a stale sidecar never
    /// overrides a newer attribute.
    #[tokio::test]
    async fn either_layout_reads_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let old = open(dir.path(), true).await;
        assert!(!old.uses_xattrs());
        old.ensure_bucket("bkt").await.unwrap();
        old.put("bkt", "k/a.png", bytes_body("old"), Some("image/png"))
            .await
            .unwrap();
        old.put("bkt", "k/b.png", bytes_body("old"), Some("image/png"))
            .await
            .unwrap();
        old.put("bkt", "k/g.png", bytes_body("old"), Some("image/png"))
            .await
            .unwrap();
        let sidecar = dir.path().join(".meta/bkt/k/a.png");
        assert_eq!(fs::read(&sidecar).unwrap(), b"image/png");
        if fs_has_xattrs(dir.path()) {
            assert_eq!(type_attr(&dir.path().join("bkt/k/a.png")), None);
        }
        drop(old);

        let new = open(dir.path(), false).await;
        assert_eq!(ct(&new, "k/a.png").await.as_deref(), Some("image/png"));
        new.copy("bkt", "k/a.png", "bkt", "k/c.png").await.unwrap();
        assert_eq!(ct(&new, "k/c.png").await.as_deref(), Some("image/png"));
        new.put("bkt", "k/a.png", bytes_body("new"), None)
            .await
            .unwrap();
        assert_eq!(ct(&new, "k/a.png").await, None, "the old sidecar is stale");
        if new.uses_xattrs() {
            assert!(!sidecar.exists(), "and a put over it takes it away");
            new.put("bkt", "k/e.png", bytes_body("e"), Some("image/webp"))
                .await
                .unwrap();
            new.rename("bkt", "k/e.png", "bkt", "k/g.png")
                .await
                .unwrap();
            assert_eq!(ct(&new, "k/g.png").await.as_deref(), Some("image/webp"));
            assert!(
                !dir.path().join(".meta/bkt/k/g.png").exists(),
                "so does a move over it"
            );
        }
        new.delete("bkt", "k/g.png").await.unwrap();
        new.put("bkt", "k/a.png", bytes_body("newer"), Some("text/plain"))
            .await
            .unwrap();
        assert_eq!(ct(&new, "k/a.png").await.as_deref(), Some("text/plain"));
        new.delete("bkt", "k/a.png").await.unwrap();
        assert!(!sidecar.exists(), "a delete takes the sidecar too");
        assert!(dir.path().join(".meta/bkt/k/b.png").exists());
        new.delete("bkt", "k/b.png").await.unwrap();
        assert!(!dir.path().join(".meta/bkt/k").exists(), "and prunes");
        new.put("bkt", "k/d.png", bytes_body("d"), Some("image/gif"))
            .await
            .unwrap();
        drop(new);

        let again = open(dir.path(), true).await;
        assert_eq!(ct(&again, "k/c.png").await.as_deref(), Some("image/png"));
        assert_eq!(ct(&again, "k/d.png").await.as_deref(), Some("image/gif"));
        assert_eq!(temp_leftovers(dir.path()), 0);
    }

    /// A type longer than an attribute can hold (64 KiB on Linux) goes to a sidecar.
    #[tokio::test]
    async fn an_over_long_type_goes_to_a_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path(), false).await;
        b.ensure_bucket("bkt").await.unwrap();
        let long = format!("text/plain; x={}", "a".repeat(70_000));
        b.put("bkt", "long.txt", bytes_body("x"), Some(&long))
            .await
            .unwrap();
        let info = b.head("bkt", "long.txt").await.unwrap().unwrap();
        assert_eq!(info.content_type.as_deref(), Some(long.as_str()));
        assert!(dir.path().join(".meta/bkt/long.txt").exists());
        b.put("bkt", "long.txt", bytes_body("x"), Some("text/plain"))
            .await
            .unwrap();
        let info = b.head("bkt", "long.txt").await.unwrap().unwrap();
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));
    }

    /// Chunks are written in order and whole, empty ones and more than one `writev` takes
    /// (1,024 buffers) included.
    #[test]
    fn chunks_are_written_in_order_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let chunks: Vec<Bytes> = (0..3000u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i % 7) as usize]))
            .collect();
        let mut file = File::create(&path).unwrap();
        write_chunks(&mut file, &chunks).unwrap();
        write_chunks(&mut file, &[]).unwrap();
        write_chunks(&mut file, &[Bytes::from_static(b"end")]).unwrap();
        drop(file);
        let mut expected = chunks.concat();
        expected.extend_from_slice(b"end");
        assert_eq!(fs::read(&path).unwrap(), expected);
    }

    /// Bodies over SMALL_PUT stream in batches and still carry their type; one that fails
    /// midway leaves no object and no temporary file.
    async fn large_bodies_stream(sidecars: bool) {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path(), sidecars).await;
        b.ensure_bucket("bkt").await.unwrap();
        let data: Vec<u8> = (0..SMALL_PUT * 2 + WRITE_BATCH / 2 + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        let n = b
            .put("bkt", "big.bin", chunked(&data), Some("application/x-tar"))
            .await
            .unwrap();
        assert_eq!(n, data.len() as u64);
        let info = b.head("bkt", "big.bin").await.unwrap().unwrap();
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(info.content_type.as_deref(), Some("application/x-tar"));
        assert_eq!(read_all(&b, "bkt", "big.bin").await.unwrap(), data);

        let broken: ByteStream = Box::pin(chunked(&data).chain(stream::once(async {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"))
        })));
        let r = b.put("bkt", "half.bin", broken, None).await;
        assert!(matches!(r, Err(BlobError::Body(_))), "{r:?}");
        assert_eq!(b.head("bkt", "half.bin").await.unwrap(), None);
        assert_eq!(temp_leftovers(dir.path()), 0);
    }

    #[tokio::test]
    async fn large_bodies_stream_xattrs() {
        large_bodies_stream(false).await;
    }

    #[tokio::test]
    async fn large_bodies_stream_sidecars() {
        large_bodies_stream(true).await;
    }

    /// A delete prunes emptied folders while puts make folders under the same prefix: a
    /// put must never fail because a folder on its way was pruned under it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn puts_survive_concurrent_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(open(dir.path(), false).await);
        b.ensure_bucket("bkt").await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..8 {
            let b = b.clone();
            tasks.spawn(async move {
                for i in 0..250 {
                    let key = format!("uploads/{t}-{i}/image");
                    b.put("bkt", &key, bytes_body("x"), Some("image/png"))
                        .await
                        .unwrap_or_else(|e| panic!("put {key}: {e}"));
                    b.delete("bkt", &key).await.unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        assert!(!dir.path().join("bkt/uploads").exists());
    }

    /// A small object comes out as one chunk, an empty one as none.
    #[tokio::test]
    async fn small_objects_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path(), false).await;
        b.ensure_bucket("bkt").await.unwrap();
        b.put("bkt", "empty", bytes_body(""), None).await.unwrap();
        b.put("bkt", "small", bytes_body(vec![5u8; 1000]), None)
            .await
            .unwrap();
        let chunks: Vec<Bytes> = b
            .get("bkt", "empty")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(chunks.is_empty());
        let chunks: Vec<Bytes> = b
            .get("bkt", "small")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(chunks, vec![Bytes::from(vec![5u8; 1000])]);
    }

    fn object(key: &str, body: &'static str, content_type: &str) -> SmallObject {
        SmallObject {
            key: key.to_owned(),
            body: Bytes::from_static(body.as_bytes()),
            content_type: Some(content_type.to_owned()),
        }
    }

    /// A set keeps each type where a single put would (an over-long one in a sidecar, and
    /// a later short one in the attribute again, which reads before the sidecar), and
    /// leaves no temporary file, also when it fails midway (there the objects renamed
    /// before the failure stay, whole) or at once (a missing bucket).
    #[tokio::test]
    async fn a_set_puts_like_single_puts_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path(), false).await;
        b.ensure_bucket("bkt").await.unwrap();
        let long = format!("text/plain; x={}", "a".repeat(70_000));
        let set = vec![
            object("k/v/a.yaml", "a: 1", "application/yaml"),
            object("k/v/long.txt", "long", &long),
        ];
        b.put_many("bkt", set).await.unwrap();
        assert_eq!(
            ct(&b, "k/v/a.yaml").await.as_deref(),
            Some("application/yaml")
        );
        assert_eq!(ct(&b, "k/v/long.txt").await.as_deref(), Some(long.as_str()));
        let sidecar = dir.path().join(".meta/bkt/k/v/long.txt");
        assert!(sidecar.exists());
        if b.uses_xattrs() {
            let attr = type_attr(&dir.path().join("bkt/k/v/a.yaml"));
            assert_eq!(attr.as_deref(), Some(&b"application/yaml"[..]));
            b.put_many("bkt", vec![object("k/v/long.txt", "short", "text/plain")])
                .await
                .unwrap();
            assert_eq!(ct(&b, "k/v/long.txt").await.as_deref(), Some("text/plain"));
        }
        assert_eq!(temp_leftovers(dir.path()), 0);

        // "k/v" is a folder: the second object cannot be renamed onto it.
        let set = vec![
            object("k/first.yaml", "first", "application/yaml"),
            object("k/v", "not a folder", "application/yaml"),
            object("k/third.yaml", "third", "application/yaml"),
        ];
        assert!(b.put_many("bkt", set).await.is_err());
        assert_eq!(read_all(&b, "bkt", "k/first.yaml").await.unwrap(), b"first");
        assert_eq!(b.head("bkt", "k/third.yaml").await.unwrap(), None);
        assert_eq!(temp_leftovers(dir.path()), 0);

        let set = vec![object("a.yaml", "a", "application/yaml")];
        let r = b.put_many("no-such-bucket", set).await;
        assert!(matches!(r, Err(BlobError::NoSuchBucket(_))), "{r:?}");
        assert_eq!(temp_leftovers(dir.path()), 0);
    }

    /// Sets an object's last-written time `days` days back.
    fn age(dir: &Path, key: &str, days: u64) {
        let at = SystemTime::now() - Duration::from_secs(days * 24 * 3600);
        let path = dir.join("bkt").join(key);
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(at).unwrap();
    }

    /// Waits until the object is gone (the lifecycle task took it), for at most 10 s.
    async fn until_gone(b: &FolderBlobs, key: &str) {
        for _ in 0..1000 {
            if b.head("bkt", key).await.unwrap().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{key} outlived its expiry rule");
    }

    /// The rule set by `expire_objects` is applied again every period while the store
    /// lives, as S3 applies a lifecycle rule, with the latest days given for the bucket;
    /// the task does not keep the store alive.
    #[tokio::test]
    async fn expiry_rules_are_applied_again_every_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = open(dir.path(), false).await;
        b.lifecycle = Arc::new(Lifecycle::every(Duration::from_millis(20)));
        b.ensure_bucket("bkt").await.unwrap();
        b.expire_objects("bkt", 2).await.unwrap();
        b.put("bkt", "later/old", bytes_body("x"), None)
            .await
            .unwrap();
        age(dir.path(), "later/old", 3);
        until_gone(&b, "later/old").await;

        b.expire_objects("bkt", 5).await.unwrap();
        // A sweep under the new rule first, then one more that sees both objects.
        b.put("bkt", "six-days", bytes_body("x"), None)
            .await
            .unwrap();
        age(dir.path(), "six-days", 6);
        until_gone(&b, "six-days").await;
        for key in ["three-days", "six-days-again"] {
            b.put("bkt", key, bytes_body(key), None).await.unwrap();
        }
        age(dir.path(), "three-days", 3);
        age(dir.path(), "six-days-again", 6);
        until_gone(&b, "six-days-again").await;
        assert_eq!(
            read_all(&b, "bkt", "three-days").await.unwrap(),
            b"three-days",
            "the sweep that took six-days-again kept three-days: the rule is 5 days now"
        );

        let lifecycle = Arc::downgrade(&b.lifecycle);
        drop(b);
        assert!(
            lifecycle.upgrade().is_none(),
            "the task holds the store weakly"
        );
    }

    /// Records the intent log of `b` holds.
    fn records(b: &FolderBlobs) -> usize {
        b.inner.log.as_ref().expect("a logged folder").records()
    }

    /// A folder whose log is never flushed while the test runs, as if in boot `boot`.
    async fn unflushed(root: &Path, boot: &str) -> FolderBlobs {
        FolderBlobs::open_in_boot(root, boot, Duration::from_secs(3600))
            .await
            .unwrap()
    }

    /// The machine stops: the store goes without its final flush, and every file that
    /// only the page cache held is lost (emptied or gone, as ext4 may leave them).
    fn power_loss(b: FolderBlobs, root: &Path, lost: &[&str], emptied: &[&str]) {
        std::mem::forget(b);
        for key in lost {
            fs::remove_file(root.join("bkt").join(key)).unwrap();
        }
        for key in emptied {
            File::create(root.join("bkt").join(key)).unwrap();
        }
    }

    /// A restart of the machine writes back each logged object as it last was (bytes and
    /// type), and only those: a deleted object stays deleted, a moved one comes back at its
    /// new name only, and an object overwritten by a synced put or a copy keeps that.
    #[tokio::test]
    async fn a_restart_of_the_machine_replays_the_intent_log() {
        let dir = tempfile::tempdir().unwrap();
        if !fs_has_xattrs(dir.path()) {
            return; // no attributes, no log
        }
        let b = unflushed(dir.path(), "boot-a").await;
        b.ensure_bucket("bkt").await.unwrap();
        let put = |key: &'static str, body: &'static str| {
            b.put("bkt", key, bytes_body(body), Some("text/yaml"))
        };
        put("a/one.yaml", "one").await.unwrap();
        let set = vec![
            object("k/v0/a.yaml", "a", "application/yaml"),
            object("k/v0/b.yaml", "b", "application/yaml"),
        ];
        b.put_many("bkt", set).await.unwrap();
        put("over", "first").await.unwrap();
        put("over", "second").await.unwrap();
        put("gone", "deleted").await.unwrap();
        b.delete("bkt", "gone").await.unwrap();
        put("from", "moved").await.unwrap();
        b.rename("bkt", "from", "bkt", "to/here").await.unwrap();
        put("large", "small at first").await.unwrap();
        let large = vec![7u8; intents::LOGGED_MAX + 1];
        b.put("bkt", "large", bytes_body(large.clone()), None)
            .await
            .unwrap();
        put("copied", "small at first").await.unwrap();
        b.copy("bkt", "over", "bkt", "copied").await.unwrap();
        assert_eq!(records(&b), 5, "one.yaml, a, b, over, to/here");
        assert_eq!(temp_leftovers(dir.path()), 0);

        let root = dir.path();
        power_loss(
            b,
            root,
            &["k/v0/a.yaml", "to/here"],
            &["a/one.yaml", "over"],
        );
        let b = unflushed(root, "boot-b").await;
        for (key, body) in [
            ("a/one.yaml", "one"),
            ("k/v0/a.yaml", "a"),
            ("k/v0/b.yaml", "b"),
            ("over", "second"),
            ("to/here", "moved"),
            ("copied", "second"),
        ] {
            assert_eq!(
                read_all(&b, "bkt", key).await.unwrap(),
                body.as_bytes(),
                "{key}"
            );
        }
        assert_eq!(ct(&b, "a/one.yaml").await.as_deref(), Some("text/yaml"));
        assert_eq!(
            ct(&b, "k/v0/b.yaml").await.as_deref(),
            Some("application/yaml")
        );
        assert_eq!(read_all(&b, "bkt", "large").await.unwrap(), large);
        for gone in ["gone", "from"] {
            assert_eq!(b.head("bkt", gone).await.unwrap(), None, "{gone}");
        }
        assert_eq!(records(&b), 0, "a replayed log is emptied");
    }

    /// A flush empties the log once the files are synced; a process of the same boot
    /// opening the folder replays nothing (the page cache kept what it wrote).
    #[tokio::test]
    async fn a_flush_empties_the_log_and_the_same_boot_replays_nothing() {
        let dir = tempfile::tempdir().unwrap();
        if !fs_has_xattrs(dir.path()) {
            return;
        }
        let root = dir.path();
        let b = unflushed(root, "boot-a").await;
        b.ensure_bucket("bkt").await.unwrap();
        b.put("bkt", "kept", bytes_body("logged"), None)
            .await
            .unwrap();
        assert_eq!(records(&b), 1);
        // The same boot: an unflushed record is not replayed over a newer file...
        std::mem::forget(b);
        fs::write(root.join("bkt/kept"), "changed by hand").unwrap();
        let b = FolderBlobs::open_in_boot(root, "boot-a", Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(
            read_all(&b, "bkt", "kept").await.unwrap(),
            b"changed by hand"
        );
        // ...and the opener flushes it, as its own.
        let waited = std::time::Instant::now();
        while records(&b) > 0 {
            assert!(waited.elapsed() < Duration::from_secs(10), "never flushed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        b.put("bkt", "later", bytes_body("x"), None).await.unwrap();
        drop(b);
        // Dropping the store flushes what is left before its thread ends.
        let waited = std::time::Instant::now();
        loop {
            let b = unflushed(root, "boot-a").await;
            if records(&b) == 0 {
                break;
            }
            assert!(waited.elapsed() < Duration::from_secs(10), "no final flush");
            std::mem::forget(b);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
