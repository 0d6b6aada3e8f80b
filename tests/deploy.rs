//! The deployment files checked against the code they deploy: the IAM policies against the
//! list of AWS calls kept beside the adapters (`k8or::store::aws::actions`), the Dockerfile
//! against the repository and the workspace's binaries (and hadolint), the systemd units
//! against the binaries' subcommands and the queues' timeouts, the environment template and
//! the operator's guide against the settings. A file that drifts from the code fails here,
//! not on an EC2 instance.

#[path = "deploy/dockerfile.rs"]
mod dockerfile;
#[path = "deploy/environment.rs"]
mod environment;
#[path = "deploy/guide.rs"]
mod guide;
#[path = "deploy/iam.rs"]
mod iam;
#[path = "deploy/systemd.rs"]
mod systemd;

use std::path::{Path, PathBuf};

use k8or::Settings;

/// The workspace's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

/// A file of the repository, by its path from the root.
fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The shipped settings: the built-in defaults with `queues.toml` over them, as a node
/// started with `K8OR_CONFIG=/etc/k8or/queues.toml` sees them.
fn shipped_settings() -> Settings {
    Settings::from_file(&repo().join("queues.toml")).expect("queues.toml loads")
}
