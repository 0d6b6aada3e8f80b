//! The tar walk: entry by entry from the stream, never unpacked. Each entry's path and type
//! are checked, every file is hashed as it passes, and the small JSON files the layout
//! checks need (manifests, indexes, configs) are kept in memory within a fixed budget.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

use k8or::config::ValidationLimits;
use k8or::digest::Sha256;
use tar::EntryType;

use super::checks::{Check, Problems};

/// A file kept for the layout checks may be at most this large…
pub const KEEP_MAX: u64 = 1024 * 1024;
/// …and all kept files together at most this large.
pub const KEEP_BUDGET: u64 = 32 * 1024 * 1024;

/// One regular file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub size: u64,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
}

/// What the walk found.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pub entries: u64,
    pub files: HashMap<String, FileInfo>,
    pub dirs: HashSet<String>,
    /// Contents of small JSON files (metadata, manifests, configs), by path.
    pub kept: HashMap<String, Vec<u8>>,
}

/// Normalizes an entry path: no leading `./`, no trailing `/`.
pub fn normalize(path: &str) -> String {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.trim_end_matches('/').to_owned()
}

/// Whether a file is worth keeping: layout metadata at the root, or a blob that starts like
/// JSON (manifests and configs do; layers are tar or compressed data).
fn wants(path: &str, first: Option<u8>) -> bool {
    matches!(
        path,
        "manifest.json" | "index.json" | "oci-layout" | "repositories"
    ) || (!path.contains('/') && path.ends_with(".json"))
        || (path.starts_with("blobs/") && first == Some(b'{'))
}

struct HashWriter<'a> {
    hasher: &'a mut Sha256,
    keep: Option<&'a mut Vec<u8>>,
}

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        if let Some(k) = self.keep.as_deref_mut() {
            k.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks an entry's path; false if it must not be used.
fn path_ok(path: &str, problems: &mut Problems) -> bool {
    let mut ok = true;
    if path.starts_with('/') {
        problems.push(
            Check::TarAbsolutePath,
            format!("entry {path:?} has an absolute path"),
        );
        ok = false;
    }
    if path.split(['/', '\\']).any(|seg| seg == "..") {
        problems.push(
            Check::TarParentPath,
            format!("entry {path:?} climbs out with '..'"),
        );
        ok = false;
    }
    ok
}

/// Long names and pax records are read into memory; they may be at most this large.
pub const META_MAX: u64 = 64 * 1024;

/// What the metadata entries before a member say about it (GNU long names, pax records).
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    /// A pax size that differs from the header's: not followed (see `walk`).
    size: Option<u64>,
}

fn trim_nul(mut b: Vec<u8>) -> Vec<u8> {
    while b.last() == Some(&0) {
        b.pop();
    }
    b
}

/// Walks the archive. Errors are only the source's; bad data becomes problems.
///
/// The tar crate would read GNU long names and pax records whole into memory, whatever
/// size their header claims; so entries are taken raw and those records are read here,
/// bounded by [`META_MAX`].
pub fn walk<R: Read>(source: R, limits: &ValidationLimits, problems: &mut Problems) -> Inventory {
    let mut inv = Inventory::default();
    let mut kept_total = 0u64;
    let mut pending = Pending::default();
    let mut archive = tar::Archive::new(source);
    let entries = match archive.entries() {
        Ok(e) => e.raw(true),
        Err(e) => {
            problems.push(Check::TarCorrupt, format!("unreadable archive: {e}"));
            return inv;
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push(
                    Check::TarCorrupt,
                    format!("truncated or corrupt after {} entries: {e}", inv.entries),
                );
                break;
            }
        };
        inv.entries += 1;
        if inv.entries > limits.max_tar_entries {
            problems.push(
                Check::TarTooManyEntries,
                format!("more than {} entries", limits.max_tar_entries),
            );
            break;
        }
        let kind = entry.header().entry_type();
        let size = entry.size();
        let is_meta = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if is_meta {
            if size > META_MAX {
                problems.push(
                    Check::TarEntryTooLarge,
                    format!("a {kind:?} record of {size} bytes, over the {META_MAX}-byte limit"),
                );
                continue;
            }
            let mut record = Vec::new();
            if let Err(e) = entry.read_to_end(&mut record) {
                problems.push(
                    Check::TarCorrupt,
                    format!("a {kind:?} record is truncated: {e}"),
                );
                break;
            }
            if kind.is_gnu_longname() {
                pending.path = Some(trim_nul(record));
            } else if kind.is_gnu_longlink() {
                pending.link = Some(trim_nul(record));
            } else if kind.is_pax_local_extensions() {
                for ext in tar::PaxExtensions::new(&record).flatten() {
                    match ext.key() {
                        Ok("path") => pending.path = Some(ext.value_bytes().to_vec()),
                        Ok("linkpath") => pending.link = Some(ext.value_bytes().to_vec()),
                        Ok("size") => pending.size = ext.value().ok().and_then(|v| v.parse().ok()),
                        _ => {}
                    }
                }
            }
            continue;
        }
        let member = std::mem::take(&mut pending);
        let raw = String::from_utf8_lossy(
            &member
                .path
                .unwrap_or_else(|| entry.path_bytes().into_owned()),
        )
        .into_owned();
        if let Some(real) = member.size.filter(|s| *s != size) {
            // Only sizes past the header's 8 GiB field need this, and those are over the
            // entry cap anyway; the stream cannot be followed past such an entry.
            problems.push(
                Check::TarEntryTooLarge,
                format!("entry {raw:?} is {real} bytes (a pax size), over what is accepted"),
            );
            break;
        }
        let safe = path_ok(&raw, problems);
        let path = normalize(&raw);
        match kind {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Directory => {
                if safe {
                    inv.dirs.insert(path);
                }
                continue;
            }
            EntryType::Symlink | EntryType::Link => {
                let target = member
                    .link
                    .or_else(|| entry.link_name_bytes().map(|t| t.into_owned()))
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let what = if kind == EntryType::Symlink {
                    "symlink"
                } else {
                    "hard link"
                };
                problems.push(
                    Check::TarLink,
                    format!("entry {raw:?} is a {what} to {target:?}"),
                );
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                problems.push(
                    Check::TarDevice,
                    format!("entry {raw:?} is a device or FIFO"),
                );
                continue;
            }
            other => {
                problems.push(
                    Check::TarEntryType,
                    format!("entry {raw:?} has unsupported type {other:?}"),
                );
                continue;
            }
        }
        if size > limits.max_tar_entry_bytes {
            problems.push(
                Check::TarEntryTooLarge,
                format!(
                    "entry {raw:?} is {size} bytes, over the {} limit",
                    limits.max_tar_entry_bytes
                ),
            );
            continue;
        }
        if !safe {
            continue;
        }
        let mut hasher = Sha256::new();
        let mut first = [0u8; 1];
        let got = match entry.read(&mut first) {
            Ok(n) => n,
            Err(e) => {
                problems.push(
                    Check::TarCorrupt,
                    format!("entry {raw:?} is truncated: {e}"),
                );
                break;
            }
        };
        hasher.update(&first[..got]);
        let keep = size <= KEEP_MAX
            && kept_total + size <= KEEP_BUDGET
            && wants(&path, (got == 1).then_some(first[0]));
        let mut kept = keep.then(|| first[..got].to_vec());
        let mut sink = HashWriter {
            hasher: &mut hasher,
            keep: kept.as_mut(),
        };
        if let Err(e) = io::copy(&mut entry, &mut sink) {
            problems.push(
                Check::TarCorrupt,
                format!("entry {raw:?} is truncated: {e}"),
            );
            break;
        }
        let info = FileInfo {
            size,
            sha256: hasher.finish_hex(),
        };
        if inv.files.insert(path.clone(), info).is_some() {
            problems.push(
                Check::TarDuplicateEntry,
                format!(
                    "entry {path:?} appears more than once (a later copy would replace the first)"
                ),
            );
        }
        if let Some(bytes) = kept {
            kept_total += bytes.len() as u64;
            inv.kept.insert(path, bytes);
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn limits() -> ValidationLimits {
        ValidationLimits::default()
    }

    fn header(path: &str, kind: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        // Written raw so that hostile paths the builder refuses can be tested.
        let bytes = path.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn tar_of(entries: &[(&str, EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let h = header(path, *kind, data.len() as u64);
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn hashes_files_and_keeps_json() {
        let data = tar_of(&[
            ("./manifest.json", EntryType::Regular, b"[]"),
            ("blobs/", EntryType::Directory, b""),
            ("blobs/sha256/aa", EntryType::Regular, b"{\"a\":1}"),
            ("blobs/sha256/bb", EntryType::Regular, b"layer bytes"),
        ]);
        let mut p = Problems::default();
        let inv = walk(&data[..], &limits(), &mut p);
        assert!(p.is_empty(), "{:?}", p.reasons());
        assert_eq!(inv.entries, 4);
        assert_eq!(inv.files.len(), 3);
        assert!(inv.dirs.contains("blobs"));
        assert_eq!(inv.kept["manifest.json"], b"[]");
        assert_eq!(inv.kept["blobs/sha256/aa"], b"{\"a\":1}");
        assert!(!inv.kept.contains_key("blobs/sha256/bb"));
        assert_eq!(
            inv.files["blobs/sha256/bb"].sha256,
            hex::encode(sha2::Sha256::digest(b"layer bytes"))
        );
    }

    #[test]
    fn hostile_entries_are_each_named() {
        let data = tar_of(&[
            ("/etc/passwd", EntryType::Regular, b"x"),
            ("../escape", EntryType::Regular, b"x"),
            ("a/../../b", EntryType::Regular, b"x"),
            ("link", EntryType::Symlink, b""),
            ("hard", EntryType::Link, b""),
            ("dev", EntryType::Char, b""),
            ("fifo", EntryType::Fifo, b""),
            ("dup", EntryType::Regular, b"1"),
            ("dup", EntryType::Regular, b"2"),
        ]);
        let mut p = Problems::default();
        let inv = walk(&data[..], &limits(), &mut p);
        for check in [
            Check::TarAbsolutePath,
            Check::TarParentPath,
            Check::TarLink,
            Check::TarDevice,
            Check::TarDuplicateEntry,
        ] {
            assert!(p.has(check), "{check} missing: {:?}", p.reasons());
        }
        assert_eq!(p.reasons().len(), 8, "{:?}", p.reasons());
        assert_eq!(inv.files.len(), 1, "only the safe file is inventoried");
    }

    #[test]
    fn caps_entries_and_entry_sizes() {
        let data = tar_of(&[
            ("a", EntryType::Regular, b"12345"),
            ("b", EntryType::Regular, b"1"),
            ("c", EntryType::Regular, b"1"),
        ]);
        let mut l = limits();
        l.max_tar_entry_bytes = 4;
        l.max_tar_entries = 2;
        let mut p = Problems::default();
        walk(&data[..], &l, &mut p);
        assert!(p.has(Check::TarEntryTooLarge), "{:?}", p.reasons());
        assert!(p.has(Check::TarTooManyEntries), "{:?}", p.reasons());
    }

    #[test]
    fn long_names_and_pax_paths_are_followed() {
        let long = format!("blobs/sha256/{}", "a".repeat(120));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"{}"[..]).unwrap();
        b.append_pax_extensions([("path", "../pax-escape".as_bytes())])
            .unwrap();
        let mut h = header("innocent", EntryType::Regular, 1);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let mut p = Problems::default();
        let inv = walk(&data[..], &limits(), &mut p);
        assert!(inv.files.contains_key(&long), "{:?}", inv.files.keys());
        assert!(
            p.has(Check::TarParentPath),
            "the pax path is the one checked: {:?}",
            p.reasons()
        );
        assert!(!inv.files.contains_key("innocent"));
    }

    #[test]
    fn a_huge_long_name_record_is_refused_without_reading_it_into_memory() {
        let size = 64 * 1024 * 1024;
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(EntryType::GNULongName);
        h.set_size(size);
        h.set_cksum();
        let source = io::Cursor::new(h.as_bytes().to_vec())
            .chain(io::repeat(b'a').take(size))
            .chain(io::Cursor::new(vec![0u8; 1024]));
        let mut p = Problems::default();
        walk(source, &limits(), &mut p);
        assert!(p.has(Check::TarEntryTooLarge), "{:?}", p.reasons());
    }

    #[test]
    fn truncation_is_corrupt() {
        let data = tar_of(&[("a", EntryType::Regular, &[7u8; 2000])]);
        let mut p = Problems::default();
        walk(&data[..1000], &limits(), &mut p);
        assert!(p.has(Check::TarCorrupt), "{:?}", p.reasons());
    }
}
