//! The layout checks of a container image archive, over what the walk found: a `docker
//! save` archive (manifest.json) or an OCI image layout (oci-layout + index.json). Every
//! referenced file or blob must be there, and every blob's sha256 must match its name.

use serde::Deserialize;
use serde_json::Value;

use super::archive::Inventory;
use super::checks::{Check, Problems};

/// Indexes may nest; deeper than this is refused rather than followed.
const MAX_INDEX_DEPTH: usize = 4;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What the archive holds, when its layout is sound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `docker-save` or `oci-layout`.
    pub format: &'static str,
    /// Image manifests found (docker manifest.json entries, or OCI image manifests).
    pub images: usize,
    pub layers: usize,
    pub blobs: usize,
    pub repo_tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutFile {
    image_layout_version: String,
}

/// `blobs/sha256/<hex>` for a `sha256:<hex>` digest.
fn blob_path(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    is_sha256_hex(hex).then(|| format!("blobs/sha256/{hex}"))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every file under `blobs/` must be named for its own digest.
fn check_blobs(inv: &Inventory, p: &mut Problems) -> usize {
    let mut blobs = 0;
    let mut names: Vec<&String> = inv
        .files
        .keys()
        .filter(|k| k.starts_with("blobs/"))
        .collect();
    names.sort();
    for path in names {
        blobs += 1;
        let info = &inv.files[path];
        match path.split('/').collect::<Vec<_>>()[..] {
            ["blobs", "sha256", hex] if is_sha256_hex(hex) => {
                if info.sha256 != hex {
                    p.push(
                        Check::ArchiveBlobDigest,
                        format!("{path} has sha256 {}", info.sha256),
                    );
                }
            }
            ["blobs", alg, _] if alg != "sha256" => p.push(
                Check::ArchiveBlobDigest,
                format!("{path}: digest algorithm {alg:?} is not supported (sha256 only)"),
            ),
            _ => p.push(
                Check::ArchiveBlobDigest,
                format!("{path} is not named blobs/sha256/<64 lowercase hex digits>"),
            ),
        }
    }
    blobs
}

fn parse<T: serde::de::DeserializeOwned>(
    inv: &Inventory,
    path: &str,
    p: &mut Problems,
) -> Option<T> {
    let Some(bytes) = inv.kept.get(path) else {
        let why = if inv.files.contains_key(path) {
            "is too large to be metadata"
        } else {
            "is missing"
        };
        p.push(Check::ArchiveBadManifest, format!("{path} {why}"));
        return None;
    };
    match serde_json::from_slice(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            p.push(
                Check::ArchiveBadManifest,
                format!("{path} is not valid: {e}"),
            );
            None
        }
    }
}

fn check_docker(inv: &Inventory, p: &mut Problems, out: &mut Layout) {
    let Some(images) = parse::<Vec<DockerImage>>(inv, "manifest.json", p) else {
        return;
    };
    if images.is_empty() {
        p.push(Check::ArchiveBadManifest, "manifest.json lists no image");
    }
    for (i, image) in images.iter().enumerate() {
        out.images += 1;
        out.layers += image.layers.len();
        out.repo_tags
            .extend(image.repo_tags.iter().flatten().cloned());
        for file in std::iter::once(&image.config).chain(&image.layers) {
            let path = super::archive::normalize(file);
            if !inv.files.contains_key(&path) {
                p.push(
                    Check::ArchiveMissingBlob,
                    format!(
                        "manifest.json image {i} refers to {file:?}, which is not in the archive"
                    ),
                );
            }
        }
        // Older docker names the config `<sha256>.json`: that name is a digest too.
        let config = super::archive::normalize(&image.config);
        if let Some(hex) = config.strip_suffix(".json").filter(|h| is_sha256_hex(h)) {
            if let Some(info) = inv.files.get(&config) {
                if info.sha256 != hex {
                    p.push(
                        Check::ArchiveBlobDigest,
                        format!("{config} has sha256 {}", info.sha256),
                    );
                }
            }
        }
    }
}

/// Checks a descriptor's blob: present, of the stated size. Returns its path if present.
fn check_descriptor(
    inv: &Inventory,
    d: &Descriptor,
    from: &str,
    p: &mut Problems,
) -> Option<String> {
    let Some(path) = blob_path(&d.digest) else {
        p.push(
            Check::ArchiveBadManifest,
            format!(
                "{from}: digest {:?} is not sha256:<64 hex digits>",
                d.digest
            ),
        );
        return None;
    };
    let Some(info) = inv.files.get(&path) else {
        p.push(
            Check::ArchiveMissingBlob,
            format!("{from} refers to {}, which is not in the archive", d.digest),
        );
        return None;
    };
    if info.size != d.size {
        p.push(
            Check::ArchiveBlobSize,
            format!("{path} is {} bytes, {from} says {}", info.size, d.size),
        );
    }
    Some(path)
}

fn check_oci_index(inv: &Inventory, path: &str, depth: usize, p: &mut Problems, out: &mut Layout) {
    let Some(index) = parse::<Value>(inv, path, p) else {
        return;
    };
    let manifests: Vec<Descriptor> =
        match index.get("manifests").cloned().map(serde_json::from_value) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                p.push(
                    Check::ArchiveBadManifest,
                    format!("{path}: manifests are not descriptors: {e}"),
                );
                return;
            }
            None => {
                p.push(
                    Check::ArchiveBadManifest,
                    format!("{path} has no manifests list"),
                );
                return;
            }
        };
    if depth == 0 && manifests.is_empty() {
        p.push(
            Check::ArchiveBadManifest,
            format!("{path} lists no manifest"),
        );
    }
    for d in manifests {
        let Some(blob) = check_descriptor(inv, &d, path, p) else {
            continue;
        };
        match d.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_LIST) if depth + 1 >= MAX_INDEX_DEPTH => {
                p.push(
                    Check::ArchiveBadManifest,
                    format!("{blob}: indexes nest deeper than {MAX_INDEX_DEPTH}"),
                );
            }
            Some(OCI_INDEX | DOCKER_LIST) => check_oci_index(inv, &blob, depth + 1, p, out),
            Some(OCI_MANIFEST | DOCKER_MANIFEST) | None => check_oci_manifest(inv, &blob, p, out),
            Some(other) => p.push(
                Check::ArchiveBadManifest,
                format!("{blob}: unknown manifest media type {other:?}"),
            ),
        }
    }
}

fn check_oci_manifest(inv: &Inventory, path: &str, p: &mut Problems, out: &mut Layout) {
    #[derive(Deserialize)]
    struct Manifest {
        config: Descriptor,
        #[serde(default)]
        layers: Vec<Descriptor>,
    }
    let Some(m) = parse::<Manifest>(inv, path, p) else {
        return;
    };
    out.images += 1;
    out.layers += m.layers.len();
    check_descriptor(inv, &m.config, path, p);
    for layer in &m.layers {
        check_descriptor(inv, layer, path, p);
    }
}

/// Checks the archive's layout; `Some` when it is a sound image archive.
pub fn check(inv: &Inventory, p: &mut Problems) -> Option<Layout> {
    let before = p.count();
    let mut out = Layout {
        format: "oci-layout",
        images: 0,
        layers: 0,
        blobs: check_blobs(inv, p),
        repo_tags: Vec::new(),
    };
    let docker = inv.files.contains_key("manifest.json");
    let oci = inv.files.contains_key("oci-layout") || inv.files.contains_key("index.json");
    if !docker && !oci {
        p.push(
            Check::ArchiveNoManifest,
            "a tar that is neither a `docker save` archive (manifest.json) nor an OCI image layout (oci-layout, index.json)",
        );
        return None;
    }
    if oci {
        if let Some(layout) = parse::<OciLayoutFile>(inv, "oci-layout", p) {
            if layout.image_layout_version != "1.0.0" {
                p.push(
                    Check::ArchiveBadManifest,
                    format!(
                        "oci-layout version {:?} is not 1.0.0",
                        layout.image_layout_version
                    ),
                );
            }
        }
        check_oci_index(inv, "index.json", 0, p, &mut out);
    }
    if docker {
        // Newer docker writes both; the docker manifest then describes the same images.
        let oci_images = out.images;
        out.format = "docker-save";
        out.images = 0;
        out.layers = 0;
        check_docker(inv, p, &mut out);
        out.images = out.images.max(oci_images);
    }
    (p.count() == before).then_some(out)
}
