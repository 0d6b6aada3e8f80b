//! SHA-256 of uploads and archives, on ring's assembly (BoringSSL's): it picks SHA-NI,
//! AVX2 or SSSE3 at run time. RustCrypto's `sha2` uses SHA-NI where the CPU has it and
//! plain Rust where it does not, which on an AVX2 machine without SHA-NI hashes at well
//! under half of `openssl dgst`'s speed (the bench's validate and ingest rows).

use ring::digest::{Context, SHA256};

/// A running SHA-256.
#[derive(Clone)]
pub struct Sha256(Context);

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

impl Sha256 {
    pub fn new() -> Self {
        Self(Context::new(&SHA256))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest as lowercase hex.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn matches_the_reference_in_any_split() {
        assert_eq!(
            Sha256::new().finish_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let reference = hex::encode(sha2::Sha256::digest(&data));
        for split in [0, 1, 63, 64, 65, 4096, 99_999] {
            let mut h = Sha256::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finish_hex(), reference, "split at {split}");
        }
    }
}
