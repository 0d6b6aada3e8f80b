//! Where the token secret comes from: `K8OR_TOKEN_SECRET` (or `token_secret` in the config)
//! if set; else, in embedded mode, a file in the data folder made on first start (mode
//! 0600), so a laptop needs no setup; the AWS backend has no default — every API node
//! must share one secret, so a missing one stops the start with a message.

use std::io::Write;
use std::path::{Path, PathBuf};

use k8or::config::BackendKind;
use k8or::Settings;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

/// The file, in the data folder, that holds the embedded mode's generated secret.
pub const SECRET_FILE: &str = "token-secret";
/// HS256 wants at least as many secret bytes as the hash: 32.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "K8OR_TOKEN_SECRET is not set: the aws backend needs one token secret shared by every \
         API node (at least {MIN_SECRET_LEN} characters, e.g. `openssl rand -hex 32`)"
    )]
    Missing,
    #[error("the token secret {0} is too short: it must be at least {MIN_SECRET_LEN} characters")]
    TooShort(&'static str),
    #[error("token secret file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct TokenSecret {
    value: SecretString,
    /// Where it was read from or written to, for the embedded file.
    pub file: Option<PathBuf>,
    /// True when this call made the file.
    pub generated: bool,
}

impl TokenSecret {
    pub fn bytes(&self) -> &[u8] {
        self.value.expose_secret().as_bytes()
    }
}

/// Finds (or, in embedded mode, makes) the token secret.
pub fn resolve(settings: &Settings) -> Result<TokenSecret, SecretError> {
    if let Some(secret) = &settings.token_secret {
        if secret.expose_secret().len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort("K8OR_TOKEN_SECRET"));
        }
        return Ok(TokenSecret {
            value: secret.clone(),
            file: None,
            generated: false,
        });
    }
    match settings.backend {
        BackendKind::Aws => Err(SecretError::Missing),
        BackendKind::Embedded => from_file(&settings.data_dir.join(SECRET_FILE)),
    }
}

fn from_file(path: &Path) -> Result<TokenSecret, SecretError> {
    let io = |source| SecretError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut generated = false;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let text = hex::encode(bytes);
            match create_private(path) {
                Ok(mut file) => {
                    file.write_all(text.as_bytes()).map_err(io)?;
                    file.sync_all().map_err(io)?;
                    generated = true;
                    text
                }
                // Another process made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::fs::read_to_string(path).map_err(io)?
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(e) => return Err(io(e)),
    };
    let text = text.trim().to_owned();
    if text.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort("file"));
    }
    Ok(TokenSecret {
        value: SecretString::from(text),
        file: Some(path.to_owned()),
        generated,
    })
}

/// Creates a new file only its owner can read.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_makes_a_private_secret_once() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().join("data"),
            ..Settings::default()
        };
        let first = resolve(&settings).unwrap();
        assert!(first.generated);
        let second = resolve(&settings).unwrap();
        assert!(!second.generated);
        assert_eq!(first.bytes(), second.bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(first.file.unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn aws_without_a_secret_fails_and_short_secrets_fail() {
        let settings = Settings {
            backend: BackendKind::Aws,
            ..Settings::default()
        };
        let err = resolve(&settings).err().unwrap();
        assert!(err.to_string().contains("K8OR_TOKEN_SECRET"));
        let settings = Settings {
            backend: BackendKind::Aws,
            token_secret: Some(SecretString::from("short")),
            ..Settings::default()
        };
        assert!(matches!(resolve(&settings), Err(SecretError::TooShort(_))));
        let settings = Settings {
            backend: BackendKind::Aws,
            token_secret: Some(SecretString::from("x".repeat(32))),
            ..Settings::default()
        };
        assert_eq!(resolve(&settings).unwrap().bytes().len(), 32);
    }
}
