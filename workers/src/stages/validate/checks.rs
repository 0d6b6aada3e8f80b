//! The named checks of validation. A rejection lists every failed check as
//! `<check>: <detail>`, so the board, the error log and tests can tell them apart.

use std::fmt;

/// A validation check; its name is stable (tests and operators match on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    EmptyFile,
    UploadMissing,
    UnknownFormat,
    UploadMismatch,
    ImageVersion,
    PictureTooLarge,
    PictureCorrupt,
    TarCorrupt,
    TarAbsolutePath,
    TarParentPath,
    TarLink,
    TarDevice,
    TarEntryType,
    TarTooManyEntries,
    TarEntryTooLarge,
    TarDuplicateEntry,
    ArchiveNoManifest,
    ArchiveBadManifest,
    ArchiveMissingBlob,
    ArchiveBlobDigest,
    ArchiveBlobSize,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmptyFile => "empty-file",
            Self::UploadMissing => "upload-missing",
            Self::UnknownFormat => "unknown-format",
            Self::UploadMismatch => "upload-mismatch",
            Self::ImageVersion => "image-version",
            Self::PictureTooLarge => "picture-too-large",
            Self::PictureCorrupt => "picture-corrupt",
            Self::TarCorrupt => "tar-corrupt",
            Self::TarAbsolutePath => "tar-absolute-path",
            Self::TarParentPath => "tar-parent-path",
            Self::TarLink => "tar-link",
            Self::TarDevice => "tar-device",
            Self::TarEntryType => "tar-entry-type",
            Self::TarTooManyEntries => "tar-too-many-entries",
            Self::TarEntryTooLarge => "tar-entry-too-large",
            Self::TarDuplicateEntry => "tar-duplicate-entry",
            Self::ArchiveNoManifest => "archive-no-manifest",
            Self::ArchiveBadManifest => "archive-bad-manifest",
            Self::ArchiveMissingBlob => "archive-missing-blob",
            Self::ArchiveBlobDigest => "archive-blob-digest",
            Self::ArchiveBlobSize => "archive-blob-size",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most this many problems are listed one by one; a hostile archive could have millions.
pub const MAX_LISTED: usize = 50;

/// Every failed check, in the order found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems {
    listed: Vec<(Check, String)>,
    unlisted: usize,
}

impl Problems {
    pub fn push(&mut self, check: Check, detail: impl Into<String>) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push((check, detail.into()));
        } else {
            self.unlisted += 1;
        }
    }

    /// All problems found, listed or not.
    pub fn count(&self) -> usize {
        self.listed.len() + self.unlisted
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    pub fn has(&self, check: Check) -> bool {
        self.listed.iter().any(|(c, _)| *c == check)
    }

    /// The reasons of a rejection: `<check>: <detail>`, and a count of those not listed.
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .listed
            .iter()
            .map(|(c, d)| format!("{c}: {d}"))
            .collect();
        if self.unlisted > 0 {
            out.push(format!("… and {} more problems", self.unlisted));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_check_and_cap_the_list() {
        let mut p = Problems::default();
        assert!(p.is_empty());
        for i in 0..(MAX_LISTED + 3) {
            p.push(Check::TarLink, format!("entry {i}"));
        }
        let r = p.reasons();
        assert_eq!(r.len(), MAX_LISTED + 1);
        assert_eq!(r[0], "tar-link: entry 0");
        assert_eq!(r[MAX_LISTED], "… and 3 more problems");
        assert!(p.has(Check::TarLink) && !p.has(Check::TarDevice));
    }
}
