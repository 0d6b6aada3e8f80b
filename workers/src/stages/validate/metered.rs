//! The whole-object size and sha256, measured on a second thread while the parsers read.
//!
//! The archive walk already sha256-hashes every entry (for the blob digest checks); hashing
//! the whole object on the same thread would hash every byte twice in a row. So a reader
//! thread reads the source in chunks of at most [`CHUNK`], hashes each one, and hands it on
//! (moved, not copied) over a channel of [`IN_FLIGHT`] chunks: memory stays flat whatever
//! the object's size. The parsers read from the other end through [`Metered`], and hand
//! each chunk they are done with back to the reader thread, which fills it again: the same
//! few buffers go round instead of a fresh megabyte per chunk, allocated on one thread and
//! freed on the other (with the binaries' allocator giving freed pages back soon, see
//! `crate::allocator`, that is page faults on every chunk: with the delay at 0 the 1 GiB
//! archive check had fallen from 1,207–1,456 to 829–877 MB/s).
//!
//! It also keeps apart whether the *source* failed: a failing source (the blob store went
//! away) is a retry, while data the parsers refuse is a rejection, and the two must not be
//! confused.

use std::io::{self, Read};
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SendError, SyncSender};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use k8or::digest::Sha256;

/// The most read from the source at a time.
pub const CHUNK: usize = 1024 * 1024;
/// Chunks read ahead of the parsers, at most.
pub const IN_FLIGHT: usize = 4;

/// The size and lowercase hex sha256 of the whole object.
type Measured = io::Result<(u64, String)>;

/// The parsers' end: a `Read` over the chunks the reader thread has hashed.
pub struct Metered<'scope> {
    chunks: Option<Receiver<io::Result<Vec<u8>>>>,
    /// The chunk being read, and how far.
    current: Vec<u8>,
    at: usize,
    /// Where read chunks go back to the reader thread.
    spent: SyncSender<Vec<u8>>,
    reader: Option<ScopedJoinHandle<'scope, Measured>>,
    /// Set when the parsers give up (dropped without `finish`): the rest is not read.
    abandoned: Arc<AtomicBool>,
    source_error: Option<io::Error>,
    /// The kind of the source's failure, once there was one: every later read fails too.
    failed: Option<io::ErrorKind>,
}

/// Reads the source to its end, hashing every chunk and passing it on while anyone listens.
/// Each chunk is a buffer the parsers gave back, if there is one, else a new one.
fn read_all<R: Read>(
    mut source: R,
    chunks: SyncSender<io::Result<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
    abandoned: &AtomicBool,
) -> Measured {
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut listening = true;
    // Once nobody listens, the one buffer the rest is measured in.
    let mut kept: Option<Vec<u8>> = None;
    while !abandoned.load(Ordering::Relaxed) {
        let mut chunk = kept
            .take()
            .or_else(|| spent.try_recv().ok())
            .unwrap_or_else(|| Vec::with_capacity(CHUNK));
        chunk.clear();
        // Fills the chunk unless the source ends first (retrying interrupted reads).
        if let Err(e) = (&mut source).take(CHUNK as u64).read_to_end(&mut chunk) {
            if listening {
                let copy = io::Error::new(e.kind(), e.to_string());
                // The parsers may have gone; the error is returned below either way.
                let _ = chunks.send(Err(copy));
            }
            return Err(e);
        }
        if chunk.is_empty() {
            break;
        }
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        if !listening {
            kept = Some(chunk);
        } else if let Err(SendError(back)) = chunks.send(Ok(chunk)) {
            // The parsers are done: the rest is only measured.
            listening = false;
            kept = back.ok();
        }
    }
    Ok((bytes, hasher.finish_hex()))
}

impl<'scope> Metered<'scope> {
    /// Starts the reader thread in `scope`.
    pub fn new<'env, R: Read + Send + 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        source: R,
    ) -> Self {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        // Room for every chunk there can be, so giving one back never waits.
        let (spent, recycled) = sync_channel(IN_FLIGHT + 2);
        let abandoned = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&abandoned);
        let reader = scope.spawn(move || read_all(source, tx, recycled, &flag));
        Self {
            chunks: Some(rx),
            current: Vec::new(),
            at: 0,
            spent,
            reader: Some(reader),
            abandoned,
            source_error: None,
            failed: None,
        }
    }

    /// Lets the rest be read, so the digest and count cover the whole object.
    pub fn finish(mut self) -> Measured {
        if let Some(e) = self.source_error.take() {
            return Err(e);
        }
        // The reader stops handing chunks on and only measures what is left.
        self.chunks = None;
        let reader = self.reader.take().expect("finish runs once");
        match reader.join() {
            Ok(measured) => measured,
            Err(panicked) => panic::resume_unwind(panicked),
        }
    }

    /// The source's own failure, if it had one.
    pub fn take_source_error(&mut self) -> Option<io::Error> {
        self.source_error.take()
    }
}

impl Drop for Metered<'_> {
    fn drop(&mut self) {
        if self.reader.is_some() {
            self.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

impl Read for Metered<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "the source failed earlier"));
        }
        if self.at == self.current.len() && !buf.is_empty() {
            let next = self.chunks.as_ref().and_then(|rx| rx.recv().ok());
            match next {
                Some(Ok(chunk)) => {
                    let done = std::mem::replace(&mut self.current, chunk);
                    self.at = 0;
                    if done.capacity() > 0 {
                        // Full or gone only if the reader is done: then it is freed here.
                        let _ = self.spent.try_send(done);
                    }
                }
                Some(Err(e)) => {
                    self.failed = Some(e.kind());
                    self.source_error = Some(io::Error::new(e.kind(), e.to_string()));
                    return Err(e);
                }
                // The reader thread is done: the end of the object.
                None => return Ok(0),
            }
        }
        let rest = &self.current[self.at..];
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

/// Reads up to `n` bytes (fewer only at the end of the stream).
pub fn read_head(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use sha2::Digest as _;

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"))
        }
    }

    #[test]
    fn hashes_and_counts_everything() {
        thread::scope(|s| {
            let mut m = Metered::new(s, &b"hello world"[..]);
            let head = read_head(&mut m, 5).unwrap();
            assert_eq!(head, b"hello");
            let (bytes, sha) = m.finish().unwrap();
            assert_eq!(bytes, 11);
            assert_eq!(
                sha,
                "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
            );
        });
    }

    #[test]
    fn many_chunks_are_read_in_order_and_all_measured() {
        let data: Vec<u8> = (0..CHUNK * (IN_FLIGHT + 3) + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        thread::scope(|s| {
            let mut m = Metered::new(s, &data[..]);
            let mut read = Vec::new();
            m.read_to_end(&mut read).unwrap();
            assert!(read == data, "the parsers see every byte, in order");
            let (bytes, sha) = m.finish().unwrap();
            assert_eq!(bytes, data.len() as u64);
            assert_eq!(sha, hex::encode(sha2::Sha256::digest(&data)));
        });
        thread::scope(|s| {
            let mut m = Metered::new(s, &data[..]);
            assert_eq!(read_head(&mut m, 3).unwrap(), [0, 1, 2]);
            let (bytes, sha) = m.finish().unwrap();
            assert_eq!(bytes, data.len() as u64, "what was not read is measured");
            assert_eq!(sha, hex::encode(sha2::Sha256::digest(&data)));
        });
    }

    #[test]
    fn a_source_failure_is_kept_apart() {
        thread::scope(|s| {
            let mut m = Metered::new(s, Failing);
            assert!(read_head(&mut m, 4).is_err());
            let e = m.take_source_error().unwrap();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
            assert!(m.read(&mut [0; 4]).is_err(), "it stays failed");
            assert!(m.finish().is_err());
            assert!(Metered::new(s, Failing).finish().is_err());
        });
    }

    #[test]
    fn a_failure_after_the_parsers_are_done_still_fails_the_finish() {
        let data = vec![7u8; CHUNK + 10];
        let source = Read::chain(&data[..], Failing);
        thread::scope(|s| {
            let mut m = Metered::new(s, source);
            assert_eq!(read_head(&mut m, 2).unwrap(), [7, 7]);
            assert!(m.finish().is_err());
        });
    }
}
