//! Generated upload fixtures: real pictures, broken pictures, a decompression bomb, and
//! `docker save` / OCI image-layout archives, sound or hostile. Pure functions of their
//! arguments, so every test builds exactly what it needs. Included by path from the
//! workers' tests as well, so it only uses crates both packages depend on.

#![allow(dead_code, reason = "each test target uses a different part")]

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use serde_json::json;
use sha2::{Digest, Sha256};

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            128,
        ])
    })
}

fn encode(img: image::DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .expect("encoding a generated picture");
    out.into_inner()
}

/// A real PNG of the given size.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    encode(gradient(width, height).into(), ImageFormat::Png)
}

pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    encode(gradient(width, height).into(), ImageFormat::Jpeg)
}

pub fn gif(width: u32, height: u32) -> Vec<u8> {
    let img = RgbaImage::from_fn(width, height, |x, _| Rgba([(x % 256) as u8, 0, 0, 255]));
    encode(img.into(), ImageFormat::Gif)
}

pub fn webp(width: u32, height: u32) -> Vec<u8> {
    encode(gradient(width, height).into(), ImageFormat::WebP)
}

/// A PNG cut off in the middle of its image data.
pub fn truncated_png() -> Vec<u8> {
    let full = png(64, 64);
    full[..full.len() / 2].to_vec()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

/// A decompression bomb: a well-formed PNG of a few dozen bytes whose header declares
/// `width` x `height` RGB pixels (decoding it would need width*height*3 bytes).
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    // A zlib stream of nothing: the pixels would come from the decoder's own allocation.
    let idat = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IDAT", &idat));
    out.extend(chunk(b"IEND", &[]));
    out
}

/// One raw tar entry: written without the builder's path checks, so hostile names can be
/// made on purpose.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub path: String,
    pub kind: tar::EntryType,
    pub data: Vec<u8>,
    pub link: Option<String>,
}

impl RawEntry {
    pub fn file(path: &str, data: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            kind: tar::EntryType::Regular,
            data: data.into(),
            link: None,
        }
    }

    pub fn dir(path: &str) -> Self {
        Self {
            path: path.into(),
            kind: tar::EntryType::Directory,
            data: Vec::new(),
            link: None,
        }
    }

    pub fn symlink(path: &str, target: &str) -> Self {
        Self {
            path: path.into(),
            kind: tar::EntryType::Symlink,
            data: Vec::new(),
            link: Some(target.into()),
        }
    }
}

/// A tar of the entries, in order.
pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let name = e.path.as_bytes();
        assert!(name.len() <= 100, "fixture paths fit the ustar name field");
        h.as_ustar_mut().expect("ustar header").name[..name.len()].copy_from_slice(name);
        if let Some(link) = &e.link {
            let l = link.as_bytes();
            h.as_ustar_mut().expect("ustar header").linkname[..l.len()].copy_from_slice(l);
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(if e.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, &e.data[..]).expect("writing to memory");
    }
    b.into_inner().expect("writing to memory")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A layer: a tar holding one small file.
pub fn layer_tar() -> Vec<u8> {
    raw_tar(&[
        RawEntry::dir("app/"),
        RawEntry::file("app/run.sh", b"#!/bin/sh\necho hello\n".to_vec()),
    ])
}

fn image_config(layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/app/run.sh"], "WorkingDir": "/app"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(layer))]}
    }))
    .expect("json")
}

/// The entries of a classic `docker save` archive: `<config sha256>.json`,
/// `<id>/layer.tar`, `manifest.json` and `repositories`.
pub fn docker_save_entries() -> Vec<RawEntry> {
    let layer = layer_tar();
    let config = image_config(&layer);
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_id = sha256_hex(b"layer-id");
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": ["trolls/world-tour:v0-0-01"],
        "Layers": [format!("{layer_id}/layer.tar")]
    }]);
    vec![
        RawEntry::file(&config_name, config),
        RawEntry::dir(&format!("{layer_id}/")),
        RawEntry::file(&format!("{layer_id}/VERSION"), b"1.0".to_vec()),
        RawEntry::file(&format!("{layer_id}/layer.tar"), layer),
        RawEntry::file(
            "manifest.json",
            serde_json::to_vec(&manifest).expect("json"),
        ),
        RawEntry::file(
            "repositories",
            serde_json::to_vec(&json!({"trolls/world-tour": {"v0-0-01": layer_id}})).expect("json"),
        ),
    ]
}

/// A small, sound `docker save` archive.
pub fn docker_save_tar() -> Vec<u8> {
    raw_tar(&docker_save_entries())
}

/// The entries of an OCI image layout: oci-layout, index.json and three blobs.
pub fn oci_entries() -> Vec<RawEntry> {
    let layer = layer_tar();
    let config = image_config(&layer);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{}", sha256_hex(&layer)), "size": layer.len()}]
    }))
    .expect("json");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{}", sha256_hex(&manifest)), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "v0-0-01"}}]
    });
    let blob =
        |data: &[u8]| RawEntry::file(&format!("blobs/sha256/{}", sha256_hex(data)), data.to_vec());
    vec![
        RawEntry::file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        RawEntry::file("index.json", serde_json::to_vec(&index).expect("json")),
        RawEntry::dir("blobs/"),
        RawEntry::dir("blobs/sha256/"),
        blob(&config),
        blob(&layer),
        blob(&manifest),
    ]
}

pub fn oci_tar() -> Vec<u8> {
    raw_tar(&oci_entries())
}

/// An OCI layout whose layer blob's content no longer matches its digest name.
pub fn oci_tar_bad_digest() -> Vec<u8> {
    let layer_name = format!("blobs/sha256/{}", sha256_hex(&layer_tar()));
    let mut entries = oci_entries();
    for e in &mut entries {
        if e.path == layer_name {
            let last = e.data.len() - 600;
            e.data[last] ^= 0xff;
        }
    }
    raw_tar(&entries)
}

/// A `docker save` archive with one more entry named `../<name>`.
pub fn docker_tar_with_parent_path() -> Vec<u8> {
    let mut entries = docker_save_entries();
    entries.push(RawEntry::file(
        "../../etc/cron.d/evil",
        b"* * * * * root sh\n".to_vec(),
    ));
    raw_tar(&entries)
}

/// A `docker save` archive with one more entry that is a symlink out of the archive.
pub fn docker_tar_with_symlink() -> Vec<u8> {
    let mut entries = docker_save_entries();
    entries.push(RawEntry::symlink("escape", "/etc/passwd"));
    raw_tar(&entries)
}
