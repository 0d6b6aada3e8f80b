//! A reader that hashes and counts everything read through it, and remembers whether the
//! *source* failed: a failing source (the blob store went away) is a retry, while data the
//! parsers refuse is a rejection, and the two must not be confused.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

pub struct Metered<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    source_error: Option<io::Error>,
}

impl<R: Read> Metered<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            source_error: None,
        }
    }

    /// Reads what is left, so the digest and count cover the whole object.
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        if let Some(e) = self.source_error.take() {
            return Err(e);
        }
        io::copy(&mut self, &mut io::sink())?;
        if let Some(e) = self.source_error.take() {
            return Err(e);
        }
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }

    /// The source's own failure, if it had one.
    pub fn take_source_error(&mut self) -> Option<io::Error> {
        self.source_error.take()
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.source_error = Some(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        }
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
    use super::*;

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"))
        }
    }

    #[test]
    fn hashes_and_counts_everything() {
        let mut m = Metered::new(&b"hello world"[..]);
        let head = read_head(&mut m, 5).unwrap();
        assert_eq!(head, b"hello");
        let (bytes, sha) = m.finish().unwrap();
        assert_eq!(bytes, 11);
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn a_source_failure_is_kept_apart() {
        let mut m = Metered::new(Failing);
        assert!(read_head(&mut m, 4).is_err());
        let e = m.take_source_error().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(Metered::new(Failing).finish().is_err());
    }
}
