//! Kubernetes names and label rules: what the rendered manifests must satisfy so that the
//! API server accepts them. Each check returns the problem in plain words.

use crate::stages::publish::slug::slugify;

/// DNS-1123 / DNS-1035 labels are at most 63 characters.
pub const MAX_LABEL: usize = 63;
/// The longest suffix added to the release name (`-deployment`).
const LONGEST_SUFFIX: usize = "-deployment".len();

/// The names of one image version's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `app` label and container name: the image name as a DNS label starting with a letter.
    pub app: String,
    /// `release` label: app and version; the resource names are built on it.
    pub release: String,
}

impl Names {
    /// Names from the image name and version. Service names must be DNS-1035 labels (start
    /// with a letter, at most 63 characters), so `app-` is put before a name that starts
    /// with a digit and long names are cut at a hyphen.
    pub fn new(image_name: &str, version: &str) -> Self {
        let version = slugify(version);
        let mut app = slugify(image_name);
        if app.is_empty() {
            app = "app".into();
        }
        if !app.starts_with(|c: char| c.is_ascii_lowercase()) {
            app = format!("app-{app}");
        }
        let room = (MAX_LABEL - LONGEST_SUFFIX).saturating_sub(if version.is_empty() {
            0
        } else {
            version.len() + 1
        });
        let app = cut(&app, room.max(8));
        let release = if version.is_empty() {
            app.clone()
        } else {
            cut(&format!("{app}-{version}"), MAX_LABEL - LONGEST_SUFFIX)
        };
        Self { app, release }
    }

    pub fn deployment(&self) -> String {
        format!("{}-deployment", self.release)
    }

    pub fn service(&self) -> String {
        format!("{}-service", self.release)
    }

    pub fn config_map(&self) -> String {
        format!("{}-configmap", self.release)
    }
}

/// Cuts a slug to `max` characters, preferring a hyphen boundary, never ending in `-`.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut out = s[..max].to_owned();
    if let Some(i) = out.rfind('-').filter(|i| *i >= max / 2) {
        out.truncate(i);
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// A label name or value body: alphanumerics at both ends, `-_.` inside, at most 63.
fn is_qualified_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL
        && s.starts_with(is_alnum)
        && s.ends_with(is_alnum)
        && s.chars()
            .all(|c| is_alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// A DNS-1123 subdomain: lowercase labels joined by dots, at most 253.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= MAX_LABEL
                && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// Checks a label key (`[prefix/]name`).
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if prefix.is_some_and(|p| !is_dns_subdomain(p)) {
        return Err(format!(
            "imageLabels: key {key:?} has a prefix that is not a DNS subdomain"
        ));
    }
    if !is_qualified_part(name) {
        return Err(format!(
            "imageLabels: key {key:?} must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a label value (empty is allowed).
pub fn check_label_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_part(value) {
        Ok(())
    } else {
        Err(format!(
            "imageLabels: value {value:?} of {key:?} must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// Checks a ConfigMap key that also becomes an environment variable name.
pub fn check_env_name(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "envVars: name {key:?} must be letters, digits, '_', '-' or '.', not starting with a digit"
        ))
    }
}

/// Checks an absolute path for a volume or working directory.
pub fn check_abs_path(what: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{what}: {path:?} must be an absolute path"));
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err(format!("{what}: {path:?} must not contain '..'"));
    }
    if path.chars().any(|c| c.is_control()) || path.contains(':') {
        return Err(format!(
            "{what}: {path:?} must not contain ':' or control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_names() {
        let n = Names::new("Trolls World Tour (2020)", "v0-0-01");
        assert_eq!(n.app, "trolls-world-tour-2020");
        assert_eq!(n.release, "trolls-world-tour-2020-v0-0-01");
        assert_eq!(n.deployment(), "trolls-world-tour-2020-v0-0-01-deployment");
        assert_eq!(n.service(), "trolls-world-tour-2020-v0-0-01-service");
        assert_eq!(n.config_map(), "trolls-world-tour-2020-v0-0-01-configmap");
    }

    #[test]
    fn names_are_dns_labels_whatever_the_input() {
        for (name, version) in [
            ("2020 Movie", "v1-0-0"),
            ("", "v0-0-01"),
            ("!!!", ""),
            ("Ünïcödé Ñame", "v0-0-1"),
            (&"very long name ".repeat(20), "v10-20-30"),
        ] {
            let n = Names::new(name, version);
            for s in [n.app.clone(), n.deployment(), n.service(), n.config_map()] {
                assert!(s.len() <= MAX_LABEL, "{s}");
                assert!(s.starts_with(|c: char| c.is_ascii_lowercase()), "{s}");
                assert!(!s.ends_with('-') && !s.contains("--"), "{s}");
                assert!(
                    s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                    "{s}"
                );
            }
        }
        assert_eq!(Names::new("2020 Movie", "v1-0-0").app, "app-2020-movie");
    }

    #[test]
    fn label_rules() {
        assert!(check_label_key("label1").is_ok());
        assert!(check_label_key("k8or.com/tier").is_ok());
        assert!(check_label_key("-bad").is_err());
        assert!(check_label_key("Bad_Prefix/x").is_err());
        assert!(check_label_key(&"a".repeat(64)).is_err());
        assert!(check_label_value("k", "").is_ok());
        assert!(check_label_value("k", "value1").is_ok());
        assert!(check_label_value("k", "has space").is_err());
    }

    #[test]
    fn env_and_path_rules() {
        assert!(check_env_name("VAR1").is_ok());
        assert!(check_env_name("1VAR").is_err());
        assert!(check_env_name("A B").is_err());
        assert!(check_abs_path("volumes", "/host/path").is_ok());
        assert!(check_abs_path("volumes", "relative").is_err());
        assert!(check_abs_path("volumes", "/a/../etc").is_err());
        assert!(check_abs_path("volumes", "/a:b").is_err());
    }
}
