//! The systemd units run existing subcommands of the binaries the image builds, with the
//! environment file, a dedicated user, hardening, and a stop timeout a drain fits in.

use std::collections::BTreeMap;

use k8or::Stage;

use crate::dockerfile::built_binaries;
use crate::environment::env_example;
use crate::{read, shipped_settings};

/// A unit file's `[Section]` → (key, value) pairs, in order (a key may repeat).
type Unit = BTreeMap<String, Vec<(String, String)>>;

fn unit(rel: &str) -> Unit {
    let mut sections = Unit::new();
    let mut current: Option<String> = None;
    let mut pending = String::new();
    for (n, line) in read(rel).lines().enumerate() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with(['#', ';'])) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let entry = std::mem::take(&mut pending);
        if let Some(name) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
            current = Some(name.to_owned());
            sections.entry(name.to_owned()).or_default();
            continue;
        }
        let (key, value) = entry
            .split_once('=')
            .unwrap_or_else(|| panic!("{rel}:{}: not KEY=value: {entry}", n + 1));
        let section = current
            .clone()
            .unwrap_or_else(|| panic!("{rel}:{}: a setting before any [Section]", n + 1));
        sections
            .entry(section)
            .or_default()
            .push((key.trim().to_owned(), value.trim().to_owned()));
    }
    assert!(pending.is_empty(), "{rel} ends inside a continued line");
    for needed in ["Unit", "Service", "Install"] {
        assert!(sections.contains_key(needed), "{rel}: no [{needed}]");
    }
    sections
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .map(|entries| {
            entries
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    match values(unit, section, key).as_slice() {
        [v] => v,
        other => panic!("[{section}] {key}: expected one value, found {other:?}"),
    }
}

/// The subcommands of a binary's clap `enum Command` in its main.rs, kebab-cased, each with
/// the source of its variant (to find its flags' fields).
fn subcommands(main_rs: &str) -> BTreeMap<String, String> {
    let source = read(main_rs);
    let start = source.find("enum Command {").expect("a Command enum");
    let body = &source[start..];
    let body = &body[..body.find("\n}").expect("the enum's end")];
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in body.lines().skip(1) {
        let variant = line
            .strip_prefix("    ")
            .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|l| {
                l.chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect::<String>()
            });
        if let Some(v) = variant {
            let mut kebab = String::new();
            for (i, c) in v.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            out.insert(kebab.clone(), String::new());
            current = Some(kebab);
        } else if let Some(c) = &current {
            let text = out.get_mut(c).expect("inserted");
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// Checks an `ExecStart` command line: the binary is one the image builds, installed where
/// the Dockerfile puts it, the subcommand exists, and each `--flag` is a field of it.
fn check_exec(rel: &str, exec: &str, bin: &str, main_rs: &str, subcommand: &str) {
    let w: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(
        w.first().copied(),
        Some(format!("/usr/local/bin/{bin}").as_str()),
        "{rel}"
    );
    assert!(
        built_binaries().contains(bin),
        "{rel}: the image does not build {bin}"
    );
    assert_eq!(w.get(1).copied(), Some(subcommand), "{rel}: {exec}");
    let commands = subcommands(main_rs);
    let fields = commands
        .get(subcommand)
        .unwrap_or_else(|| panic!("{rel}: {bin} has no `{subcommand}` ({commands:?})"));
    for flag in w.iter().filter_map(|a| a.strip_prefix("--")) {
        let field = format!("{}:", flag.replace('-', "_"));
        assert!(
            fields.contains(&field),
            "{rel}: `{bin} {subcommand}` has no --{flag}"
        );
    }
}

fn seconds(value: &str) -> u64 {
    let (n, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("{value:?} is not a duration"));
    match unit.trim() {
        "" | "s" => n,
        "min" | "m" => n * 60,
        other => panic!("{value:?}: unit {other:?} not understood here"),
    }
}

/// What both units must say: the environment file, a dedicated user, SIGTERM, restarts,
/// and the hardening.
fn check_common(rel: &str, u: &Unit) {
    let env_files = values(u, "Service", "EnvironmentFile");
    assert_eq!(
        env_files.first().copied(),
        Some("/etc/k8or/k8or.env"),
        "{rel}"
    );
    let user = one(u, "Service", "User");
    assert!(user == "k8or" && user != "root", "{rel}: User={user}");
    for (key, want) in [
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(one(u, "Service", key), want, "{rel}: {key}");
    }
    let data_dir = env_example()
        .into_iter()
        .find(|(k, _, active)| k == "K8OR_DATA_DIR" && *active)
        .map(|(_, v, _)| v)
        .expect("k8or.env.example sets K8OR_DATA_DIR");
    assert!(
        values(u, "Service", "ReadWritePaths")
            .iter()
            .any(|v| v.split_whitespace().any(|p| p == data_dir)),
        "{rel}: the data folder {data_dir} must be writable"
    );
    assert_eq!(one(u, "Install", "WantedBy"), "multi-user.target", "{rel}");
    for env in values(u, "Service", "Environment") {
        let name = env.split('=').next().unwrap_or_default();
        assert!(
            !name.starts_with("K8OR_"),
            "{rel}: {name} would be read as a setting (an unknown one stops the start)"
        );
    }
}

#[test]
fn the_api_unit_serves_with_the_environment_file_and_hardening() {
    let rel = "deploy/k8or-api.service";
    let u = unit(rel);
    check_common(rel, &u);
    check_exec(
        rel,
        one(&u, "Service", "ExecStart"),
        "k8or-api",
        "api/src/main.rs",
        "serve",
    );
    let longest = Stage::ALL
        .iter()
        .map(|s| shipped_settings().stages.get(*s).visibility_timeout_secs)
        .max()
        .expect("stages");
    assert!(
        seconds(one(&u, "Service", "TimeoutStopSec")) > longest,
        "{rel}"
    );
}

#[test]
fn the_worker_template_runs_its_instance_stages_and_outlasts_a_drain() {
    let rel = "deploy/k8or-worker@.service";
    let u = unit(rel);
    check_common(rel, &u);
    let exec = one(&u, "Service", "ExecStart");
    check_exec(rel, exec, "k8or-worker", "workers/src/main.rs", "run");
    let w: Vec<&str> = exec.split_whitespace().collect();
    let arg = |flag: &str| {
        w.iter()
            .position(|a| *a == flag)
            .and_then(|i| w.get(i + 1))
            .copied()
            .unwrap_or_else(|| panic!("{rel}: no {flag} VALUE in {exec}"))
    };
    // The instance names the stage set: by default the instance itself (one stage), or a
    // per-instance file's WORKER_STAGES (several, or all).
    assert_eq!(arg("--stages"), "${WORKER_STAGES}", "{rel}");
    assert!(values(&u, "Service", "Environment").contains(&"WORKER_STAGES=%i"));
    assert!(values(&u, "Service", "EnvironmentFile").contains(&"-/etc/k8or/k8or-worker-%i.env"));
    for stage in Stage::ALL {
        assert_eq!(stage.as_str().parse::<Stage>().ok(), Some(stage));
    }
    let all = read("deploy/k8or-worker-all.env");
    let listed = all
        .lines()
        .find_map(|l| l.strip_prefix("WORKER_STAGES="))
        .expect("k8or-worker-all.env sets WORKER_STAGES");
    let parsed: Vec<Stage> = listed
        .split(',')
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect();
    assert_eq!(parsed, Stage::ALL, "k8or-worker@all runs every stage");
    // systemd must not SIGKILL a drain: stop receiving (a long poll ends within its wait),
    // the grace for jobs in flight, and the longest visibility timeout all fit.
    let settings = shipped_settings();
    let stop = seconds(one(&u, "Service", "TimeoutStopSec"));
    let grace: u64 = arg("--grace-secs").parse().expect("--grace-secs N");
    for stage in Stage::ALL {
        let c = settings.stages.get(stage);
        assert!(
            stop > c.visibility_timeout_secs && stop > grace + c.wait_time_secs,
            "{rel}: TimeoutStopSec={stop} is too short for {stage} \
             (visibility {}, grace {grace}, wait {})",
            c.visibility_timeout_secs,
            c.wait_time_secs
        );
    }
    assert!(
        grace >= settings.stages.get(Stage::Validate).visibility_timeout_secs,
        "{rel}: a validation may take its whole visibility timeout"
    );
}
