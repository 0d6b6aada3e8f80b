//! The Blobs port on a local folder: `<root>/<bucket>/<key>`.
//!
//! An object is written to a temporary file on the same filesystem, synced, then renamed
//! into place, so a reader (or a crash) sees the whole object or none of it. The content
//! type lives beside the data under `<root>/.meta/<bucket>/<key>`; bucket names cannot start
//! with a dot, so no bucket can collide with it or with `.tmp`.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::fs;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::store::blobs::{check_key, BlobError, BlobInfo, Blobs, ByteStream};

/// Chunk size of object reads.
const READ_CHUNK: usize = 256 * 1024;

/// The embedded object store.
pub struct FolderBlobs {
    root: PathBuf,
}

fn io_error(e: io::Error) -> BlobError {
    match e.kind() {
        io::ErrorKind::StorageFull => BlobError::Unavailable(e.to_string()),
        _ => BlobError::Backend(e.to_string()),
    }
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

/// A file that is deleted when dropped unless it was renamed into place: a failed or
/// cancelled write leaves nothing behind.
struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl FolderBlobs {
    /// Uses `root` as the store, creating it if missing.
    pub async fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join(".tmp")).await?;
        fs::create_dir_all(root.join(".meta")).await?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    async fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, BlobError> {
        let dir = self.root.join(bucket);
        if valid_bucket(bucket) && fs::metadata(&dir).await.is_ok_and(|m| m.is_dir()) {
            Ok(dir)
        } else {
            Err(BlobError::NoSuchBucket(bucket.to_owned()))
        }
    }

    /// The data and content-type paths of an object, after checking bucket and key.
    async fn paths(&self, bucket: &str, key: &str) -> Result<(PathBuf, PathBuf), BlobError> {
        check_key(key)?;
        let dir = self.bucket_dir(bucket).await?;
        Ok((
            dir.join(key),
            self.root.join(".meta").join(bucket).join(key),
        ))
    }

    fn temp(&self) -> TempFile {
        TempFile {
            path: self
                .root
                .join(".tmp")
                .join(uuid::Uuid::new_v4().simple().to_string()),
            kept: false,
        }
    }

    /// Renames a synced temporary file into place, making the folders on the way. A
    /// concurrent delete may remove an emptied folder between the two, so it tries again.
    async fn install(&self, mut temp: TempFile, dest: &Path) -> Result<(), BlobError> {
        let parent = dest.parent().expect("an object path has a parent");
        let mut attempts = 0;
        loop {
            fs::create_dir_all(parent).await.map_err(io_error)?;
            match fs::rename(&temp.path, dest).await {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => attempts += 1,
                Err(e) => return Err(io_error(e)),
            }
        }
        temp.kept = true;
        // The rename is durable once the folder's entry is on disk.
        if let Ok(dir) = fs::File::open(parent).await {
            let _ = dir.sync_all().await;
        }
        Ok(())
    }

    /// Writes small metadata the same way as data: temp, sync, rename.
    async fn write_small(&self, dest: &Path, bytes: &[u8]) -> Result<(), BlobError> {
        let temp = self.temp();
        let mut f = fs::File::create(&temp.path).await.map_err(io_error)?;
        f.write_all(bytes).await.map_err(io_error)?;
        f.sync_all().await.map_err(io_error)?;
        drop(f);
        self.install(temp, dest).await
    }

    async fn set_content_type(
        &self,
        meta: &Path,
        content_type: Option<&str>,
    ) -> Result<(), BlobError> {
        match content_type {
            Some(ct) => self.write_small(meta, ct.as_bytes()).await,
            None => remove_if_present(meta).await,
        }
    }

    /// Removes folders left empty under `stop` after a delete, so deleted prefixes vanish
    /// as they do in S3.
    async fn prune(&self, mut dir: PathBuf, stop: &Path) {
        while dir != stop && dir.starts_with(stop) {
            if fs::remove_dir(&dir).await.is_err() {
                break;
            }
            if !dir.pop() {
                break;
            }
        }
    }
}

async fn remove_if_present(path: &Path) -> Result<(), BlobError> {
    match fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(e)),
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
        let dir = self.root.join(bucket);
        if fs::metadata(&dir).await.is_ok_and(|m| m.is_dir()) {
            return Ok(false);
        }
        fs::create_dir_all(self.root.join(".meta").join(bucket))
            .await
            .map_err(io_error)?;
        match fs::create_dir(&dir).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        mut body: ByteStream,
        content_type: Option<&str>,
    ) -> Result<u64, BlobError> {
        let (data, meta) = self.paths(bucket, key).await?;
        let temp = self.temp();
        let mut file = fs::File::create(&temp.path).await.map_err(io_error)?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BlobError::Body)?;
            file.write_all(&chunk).await.map_err(io_error)?;
            size += chunk.len() as u64;
        }
        file.sync_all().await.map_err(io_error)?;
        drop(file);
        self.set_content_type(&meta, content_type).await?;
        self.install(temp, &data).await?;
        Ok(size)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<ByteStream, BlobError> {
        let (data, _) = self.paths(bucket, key).await?;
        match fs::File::open(&data).await {
            Ok(f) if f.metadata().await.is_ok_and(|m| m.is_file()) => {
                Ok(Box::pin(ReaderStream::with_capacity(f, READ_CHUNK)))
            }
            Ok(_) => Err(BlobError::NotFound {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::NotFound {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobInfo>, BlobError> {
        let (data, meta) = self.paths(bucket, key).await?;
        let size = match fs::metadata(&data).await {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        let content_type = match fs::read_to_string(&meta).await {
            Ok(ct) => Some(ct),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(e)),
        };
        Ok(Some(BlobInfo { size, content_type }))
    }

    async fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), BlobError> {
        let (src, _) = self.paths(src_bucket, src_key).await?;
        let (dst, dst_meta) = self.paths(dst_bucket, dst_key).await?;
        if src == dst {
            return Ok(());
        }
        let content_type = self
            .head(src_bucket, src_key)
            .await?
            .ok_or_else(|| BlobError::NotFound {
                bucket: src_bucket.to_owned(),
                key: src_key.to_owned(),
            })?
            .content_type;
        // A byte copy, never a hard link: the two objects must not share an inode, or a
        // later change to one would show in the other.
        let temp = self.temp();
        match fs::copy(&src, &temp.path).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound {
                    bucket: src_bucket.to_owned(),
                    key: src_key.to_owned(),
                })
            }
            Err(e) => return Err(io_error(e)),
        }
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&temp.path)
            .await
            .map_err(io_error)?;
        f.sync_all().await.map_err(io_error)?;
        drop(f);
        self.set_content_type(&dst_meta, content_type.as_deref())
            .await?;
        self.install(temp, &dst).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let (data, meta) = self.paths(bucket, key).await?;
        remove_if_present(&data).await?;
        remove_if_present(&meta).await?;
        let bucket_dir = self.root.join(bucket);
        if let Some(parent) = data.parent() {
            self.prune(parent.to_owned(), &bucket_dir).await;
        }
        let meta_dir = self.root.join(".meta").join(bucket);
        if let Some(parent) = meta.parent() {
            self.prune(parent.to_owned(), &meta_dir).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blobs::{bytes_body, read_all};

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

    #[cfg(unix)]
    #[tokio::test]
    async fn copies_do_not_share_the_inode_and_deletes_prune_folders() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let b = FolderBlobs::open(dir.path()).await.unwrap();
        b.ensure_bucket("one").await.unwrap();
        b.ensure_bucket("two").await.unwrap();
        b.put("one", "a/b/c.bin", bytes_body("abc"), None)
            .await
            .unwrap();
        b.copy("one", "a/b/c.bin", "two", "x.bin").await.unwrap();
        let src = std::fs::metadata(dir.path().join("one/a/b/c.bin")).unwrap();
        let dst = std::fs::metadata(dir.path().join("two/x.bin")).unwrap();
        assert_ne!(src.ino(), dst.ino());
        assert_eq!(src.nlink(), 1);
        assert_eq!(read_all(&b, "two", "x.bin").await.unwrap(), b"abc");
        b.delete("one", "a/b/c.bin").await.unwrap();
        assert!(
            !dir.path().join("one/a").exists(),
            "empty folders are pruned"
        );
        assert!(dir.path().join("one").is_dir(), "the bucket stays");
        let leftovers = std::fs::read_dir(dir.path().join(".tmp")).unwrap().count();
        assert_eq!(leftovers, 0);
    }
}
