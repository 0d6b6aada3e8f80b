//! One pass over an upload: kind by content, then the picture or archive checks, with the
//! size and sha256 of the whole object measured on the way. Synchronous over any `Read`, so
//! it is tested on bytes in memory and run on the blob stream in a blocking task.

use std::io::{self, Cursor, Read, Write};
use std::thread;

use k8or::config::ValidationLimits;

use super::archive::walk;
use super::checks::{Check, Problems};
use super::detect::{detect, Kind, PictureFormat, HEAD_LEN};
use super::layout::{self, Layout};
use super::metered::{read_head, Metered};
use super::picture;

/// A picture is decoded from a copy of its bytes (the decoders seek): kept in memory up to
/// this size, in a temporary file beyond. A file per upload, even a 4 KB one, had been an
/// inode made and freed on the worker's disk per job (on ext4 without a journal a freed
/// inode is one that new files scan past for minutes); the pipeline bench did not move
/// beyond its noise either way (225 / 279 vs 281 / 229 jobs/s, alternate runs).
const SPOOL_IN_MEMORY: usize = 8 * 1024 * 1024;

/// A valid upload, as the event and the job record describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    Picture {
        format: PictureFormat,
        width: u32,
        height: u32,
    },
    Archive(Layout),
}

impl Verified {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Picture { .. } => "picture",
            Self::Archive(_) => "container-image",
        }
    }

    pub fn format(&self) -> &'static str {
        match self {
            Self::Picture { format, .. } => format.name(),
            Self::Archive(l) => l.format,
        }
    }

    pub fn extension(&self) -> &'static str {
        match self {
            Self::Picture { format, .. } => format.extension(),
            Self::Archive(_) => "tar",
        }
    }
}

/// What one pass found.
#[derive(Debug)]
pub struct Inspection {
    pub bytes: u64,
    pub sha256: String,
    pub result: Result<Verified, Problems>,
}

/// Inspects an upload. `Err` only when the source itself fails (or the local spool does):
/// that is worth a retry; everything wrong with the data is in `result`.
///
/// The source is read on a second thread that also hashes the whole object (see
/// [`Metered`]), so the entry hashes of an archive walk and the whole-object hash run side
/// by side.
pub fn inspect<R: Read + Send>(source: R, limits: &ValidationLimits) -> io::Result<Inspection> {
    thread::scope(|scope| {
        let mut src = Metered::new(scope, source);
        let (problems, verified) = check(&mut src, limits)?;
        let (bytes, sha256) = src.finish()?;
        let result = match verified {
            Some(v) if problems.is_empty() => Ok(v),
            _ => Err(problems),
        };
        Ok(Inspection {
            bytes,
            sha256,
            result,
        })
    })
}

/// Detects the kind and runs its checks, reading as far as they need.
fn check(
    src: &mut Metered<'_>,
    limits: &ValidationLimits,
) -> io::Result<(Problems, Option<Verified>)> {
    let head = read_head(src, HEAD_LEN)?;
    let mut problems = Problems::default();
    if head.is_empty() {
        problems.push(Check::EmptyFile, "the upload has no bytes");
        return Ok((problems, None));
    }
    let verified = match detect(&head) {
        Kind::Picture(format) => {
            let mut spool = tempfile::spooled_tempfile(SPOOL_IN_MEMORY);
            spool.write_all(&head)?;
            let copied = io::copy(src, &mut spool);
            if let Some(e) = src.take_source_error() {
                return Err(e);
            }
            copied?;
            picture::validate(format, &mut spool, limits, &mut problems)?.map(|(width, height)| {
                Verified::Picture {
                    format,
                    width,
                    height,
                }
            })
        }
        Kind::Tar => {
            let inventory = walk(Cursor::new(head).chain(&mut *src), limits, &mut problems);
            if let Some(e) = src.take_source_error() {
                return Err(e);
            }
            layout::check(&inventory, &mut problems).map(Verified::Archive)
        }
        Kind::Unknown(why) => {
            problems.push(Check::UnknownFormat, why);
            None
        }
    };
    Ok((problems, verified))
}

#[cfg(test)]
#[path = "../../../../tests/support/fixtures.rs"]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn limits() -> ValidationLimits {
        ValidationLimits::default()
    }

    fn problems_of(data: &[u8], l: &ValidationLimits) -> Vec<String> {
        match inspect(data, l).unwrap().result {
            Ok(v) => panic!("expected a rejection, got {v:?}"),
            Err(p) => p.reasons(),
        }
    }

    fn has(reasons: &[String], check: Check) -> bool {
        reasons.iter().any(|r| r.starts_with(check.as_str()))
    }

    #[test]
    fn every_picture_format_decodes() {
        for (data, format, ext) in [
            (png(40, 30), "png", "png"),
            (jpeg(40, 30), "jpeg", "jpg"),
            (gif(40, 30), "gif", "gif"),
            (webp(40, 30), "webp", "webp"),
        ] {
            let i = inspect(&data[..], &limits()).unwrap();
            let v = i
                .result
                .unwrap_or_else(|p| panic!("{format}: {:?}", p.reasons()));
            assert_eq!(
                (v.kind(), v.format(), v.extension()),
                ("picture", format, ext)
            );
            assert_eq!(
                v,
                Verified::Picture {
                    format: match format {
                        "png" => PictureFormat::Png,
                        "jpeg" => PictureFormat::Jpeg,
                        "gif" => PictureFormat::Gif,
                        _ => PictureFormat::WebP,
                    },
                    width: 40,
                    height: 30
                }
            );
            assert_eq!(i.bytes, data.len() as u64);
            assert_eq!(i.sha256, sha256_hex(&data));
        }
    }

    #[test]
    fn broken_pictures_are_rejected_by_name() {
        let r = problems_of(&truncated_png(), &limits());
        assert!(has(&r, Check::PictureCorrupt), "{r:?}");
        let r = problems_of(b"", &limits());
        assert!(has(&r, Check::EmptyFile), "{r:?}");
        let r = problems_of(b"MZ\x90\0 this is an exe", &limits());
        assert!(has(&r, Check::UnknownFormat), "{r:?}");
        let mut renamed = b"\x89PNX".to_vec();
        renamed.extend_from_slice(&png(4, 4)[4..]);
        let r = problems_of(&renamed, &limits());
        assert!(has(&r, Check::UnknownFormat), "{r:?}");
    }

    /// A picture decodes from its copy in memory and, past the in-memory size, in a file.
    #[test]
    fn a_picture_decodes_from_its_spool_in_memory_or_in_a_file() {
        for (data, format) in [
            (png(40, 30), PictureFormat::Png),
            (jpeg(40, 30), PictureFormat::Jpeg),
        ] {
            for max in [16, SPOOL_IN_MEMORY] {
                let mut spool = tempfile::spooled_tempfile(max);
                spool.write_all(&data).unwrap();
                assert_eq!(spool.is_rolled(), max == 16);
                let mut problems = Problems::default();
                let dims = picture::validate(format, &mut spool, &limits(), &mut problems);
                assert_eq!(dims.unwrap(), Some((40, 30)), "{:?}", problems.reasons());
            }
        }
    }

    /// The rows are decoded to the end: a damaged byte deep in the pixel data is found.
    #[test]
    fn a_png_damaged_in_its_pixel_data_is_corrupt() {
        let mut data = png(300, 200);
        let idat = data.windows(4).position(|w| w == b"IDAT").unwrap();
        let at = idat + 4 + (data.len() - idat) / 2;
        data[at] ^= 0x55;
        let r = problems_of(&data, &limits());
        assert!(has(&r, Check::PictureCorrupt), "{r:?}");
    }

    #[test]
    fn limits_are_checked_before_decoding() {
        let bomb = png_bomb(100_000, 100_000);
        assert!(bomb.len() < 100);
        let r = problems_of(&bomb, &limits());
        assert!(has(&r, Check::PictureTooLarge), "{r:?}");
        assert_eq!(r.len(), 4, "width, height, pixel count and memory: {r:?}");
        let mut small = limits();
        small.max_pixels = 100;
        let r = problems_of(&png(11, 10), &small);
        assert!(r.iter().any(|p| p.contains("110 pixels")), "{r:?}");
        let mut tight = limits();
        tight.max_alloc_bytes = 1000;
        let r = problems_of(&png(40, 40), &tight);
        assert!(
            has(&r, Check::PictureTooLarge),
            "the decoder's allocation limit: {r:?}"
        );
    }

    #[test]
    fn sound_archives_pass() {
        for (data, format) in [
            (docker_save_tar(), "docker-save"),
            (oci_tar(), "oci-layout"),
        ] {
            let i = inspect(&data[..], &limits()).unwrap();
            let v = i
                .result
                .unwrap_or_else(|p| panic!("{format}: {:?}", p.reasons()));
            let Verified::Archive(layout) = &v else {
                panic!("{v:?}")
            };
            assert_eq!(layout.format, format);
            assert_eq!((layout.images, layout.layers), (1, 1));
            assert_eq!(v.extension(), "tar");
            assert_eq!(i.bytes, data.len() as u64);
            assert_eq!(i.sha256, sha256_hex(&data));
        }
    }

    #[test]
    fn hostile_archives_are_rejected_by_name() {
        let r = problems_of(&docker_tar_with_parent_path(), &limits());
        assert!(has(&r, Check::TarParentPath), "{r:?}");
        let r = problems_of(&docker_tar_with_symlink(), &limits());
        assert!(has(&r, Check::TarLink), "{r:?}");
        let r = problems_of(&oci_tar_bad_digest(), &limits());
        assert!(has(&r, Check::ArchiveBlobDigest), "{r:?}");
        let plain = raw_tar(&[RawEntry::file("hello.txt", b"hi".to_vec())]);
        let r = problems_of(&plain, &limits());
        assert!(has(&r, Check::ArchiveNoManifest), "{r:?}");
        let data = docker_save_tar();
        let r = problems_of(&data[..data.len() / 2 + 100], &limits());
        assert!(
            has(&r, Check::TarCorrupt) || has(&r, Check::ArchiveMissingBlob),
            "{r:?}"
        );
    }

    #[test]
    fn layout_references_are_checked() {
        // A docker config whose content no longer matches its `<sha256>.json` name.
        let mut entries = docker_save_entries();
        let config = entries
            .iter_mut()
            .find(|e| e.path.ends_with(".json") && e.path.len() == 69)
            .unwrap();
        config.data.push(b' ');
        let r = problems_of(&raw_tar(&entries), &limits());
        assert!(has(&r, Check::ArchiveBlobDigest), "{r:?}");

        // A layer that manifest.json lists but the archive lacks.
        let mut entries = docker_save_entries();
        entries.retain(|e| !e.path.ends_with("/layer.tar"));
        let r = problems_of(&raw_tar(&entries), &limits());
        assert!(has(&r, Check::ArchiveMissingBlob), "{r:?}");

        // An OCI descriptor whose size is not the blob's.
        let mut entries = oci_entries();
        let index = entries.iter_mut().find(|e| e.path == "index.json").unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&index.data).unwrap();
        json["manifests"][0]["size"] = 1.into();
        index.data = serde_json::to_vec(&json).unwrap();
        let r = problems_of(&raw_tar(&entries), &limits());
        assert!(has(&r, Check::ArchiveBlobSize), "{r:?}");

        // An index.json without the oci-layout marker file.
        let mut entries = oci_entries();
        entries.retain(|e| e.path != "oci-layout");
        let r = problems_of(&raw_tar(&entries), &limits());
        assert!(has(&r, Check::ArchiveBadManifest), "{r:?}");
    }

    #[test]
    fn every_failed_check_is_reported_not_just_the_first() {
        let mut entries = oci_entries();
        entries.retain(|e| !e.data.starts_with(b"{\"architecture\""));
        entries.push(RawEntry::symlink("a-link", "/"));
        entries.push(RawEntry::file("blobs/sha256/not-a-digest", b"x".to_vec()));
        let r = problems_of(&raw_tar(&entries), &limits());
        assert!(has(&r, Check::TarLink), "{r:?}");
        assert!(has(&r, Check::ArchiveBlobDigest), "{r:?}");
        assert!(has(&r, Check::ArchiveMissingBlob), "{r:?}");
    }

    #[test]
    fn a_failing_source_is_an_error_not_a_rejection() {
        struct Cut(Vec<u8>, usize);
        impl Read for Cut {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 >= self.0.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "store went away",
                    ));
                }
                let n = buf.len().min(self.0.len() - self.1).min(700);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let data = oci_tar();
        let half = data[..data.len() / 2].to_vec();
        assert!(inspect(Cut(half, 0), &limits()).is_err());
        let pic = png(30, 30);
        let part = pic[..pic.len() / 2].to_vec();
        assert!(inspect(Cut(part, 0), &limits()).is_err());
    }
}
