//! The real Kubernetes tools the rendered kustomization must satisfy: `kubectl kustomize`
//! (Debian's kubernetes-client) builds it, and `kubernetes-validate` (PyPI, in the
//! project's `.venv`, schemas bundled, offline) checks every resource against the schema.
//! Missing tools fail the test under CI (CI=true) and are skipped with a notice elsewhere.

#![allow(dead_code, reason = "each test target uses a different part")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns false (after a notice) when the tool is missing outside CI; panics under CI.
fn available(tool: &str, probe: &mut Command, install: &str) -> bool {
    let ok = probe.output().is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("{tool} is not available; install it with: {install}");
        assert!(!under_ci(), "{msg} (CI=true: this test needs it)");
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

/// Builds the kustomization folder with `kubectl kustomize`; `None` when skipped.
pub fn kustomize_build(dir: &Path) -> Option<String> {
    let install = "apt-get update && apt-get install -y kubernetes-client";
    if !available(
        "kubectl",
        Command::new("kubectl").args(["version", "--client"]),
        install,
    ) {
        return None;
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("kustomize prints UTF-8"))
}

fn kubernetes_validate() -> PathBuf {
    if let Some(p) = std::env::var_os("K8OR_KUBERNETES_VALIDATE") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/kubernetes-validate")
}

/// Validates every resource of the YAML files strictly against the Kubernetes schema.
pub fn schema_validate(files: &[PathBuf]) -> bool {
    let tool = kubernetes_validate();
    let install = ".venv/bin/pip install kubernetes-validate (scripts/test sets up .venv)";
    if !available(
        "kubernetes-validate",
        Command::new(&tool).arg("--version"),
        install,
    ) {
        return false;
    }
    let out = Command::new(&tool)
        .arg("--strict")
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate rejected the manifests:\n{text}"
    );
    assert!(!text.contains("ERROR") && !text.contains("WARN"), "{text}");
    true
}
