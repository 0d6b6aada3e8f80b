//! What an upload is, from its first bytes: never from its name or declared type.

/// How many leading bytes detection needs (a tar header's magic ends at offset 263).
pub const HEAD_LEN: usize = 512;

/// The accepted picture formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureFormat {
    Png,
    Jpeg,
    Gif,
    WebP,
}

impl PictureFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Gif => "gif",
            Self::WebP => "webp",
        }
    }

    /// The stored object's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Gif => "gif",
            Self::WebP => "webp",
        }
    }
}

/// The kind of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Picture(PictureFormat),
    /// A tar archive (a `docker save` or OCI image-layout archive, once its layout checks).
    Tar,
    /// Anything else, with what it looks like, for the rejection.
    Unknown(String),
}

/// Detects the kind from the first bytes (up to [`HEAD_LEN`]).
pub fn detect(head: &[u8]) -> Kind {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Kind::Picture(PictureFormat::Png);
    }
    if starts(b"\xff\xd8\xff") {
        return Kind::Picture(PictureFormat::Jpeg);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Kind::Picture(PictureFormat::Gif);
    }
    if head.len() >= 12 && starts(b"RIFF") && &head[8..12] == b"WEBP" {
        return Kind::Picture(PictureFormat::WebP);
    }
    if head.len() >= 263 && &head[257..262] == b"ustar" {
        return Kind::Tar;
    }
    Kind::Unknown(describe_unknown(head).into())
}

fn describe_unknown(head: &[u8]) -> &'static str {
    let starts = |magic: &[u8]| head.starts_with(magic);
    let text = String::from_utf8_lossy(&head[..head.len().min(256)]).to_ascii_lowercase();
    if starts(b"\x1f\x8b") {
        "gzip-compressed data: upload the uncompressed `docker save` or OCI tar"
    } else if starts(b"\x28\xb5\x2f\xfd") || starts(b"BZh") || starts(b"\xfd7zXZ\x00") {
        "compressed data: upload the uncompressed `docker save` or OCI tar"
    } else if starts(b"PK\x03\x04") {
        "a zip archive, which is not accepted"
    } else if text.contains("<svg")
        || (text.trim_start().starts_with("<?xml") && text.contains("svg"))
    {
        "an SVG picture, which is not accepted (it can carry script)"
    } else if starts(b"BM") || starts(b"II*\x00") || starts(b"MM\x00*") {
        "a BMP or TIFF picture, which is not accepted (PNG, JPEG, GIF or WebP only)"
    } else {
        "not a PNG, JPEG, GIF or WebP picture, nor a tar archive"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_by_magic() {
        assert_eq!(
            detect(b"\x89PNG\r\n\x1a\nrest"),
            Kind::Picture(PictureFormat::Png)
        );
        assert_eq!(
            detect(b"\xff\xd8\xff\xe0"),
            Kind::Picture(PictureFormat::Jpeg)
        );
        assert_eq!(detect(b"GIF89a..."), Kind::Picture(PictureFormat::Gif));
        assert_eq!(
            detect(b"RIFF\x10\0\0\0WEBPVP8 "),
            Kind::Picture(PictureFormat::WebP)
        );
        assert!(matches!(
            detect(b"RIFF\x10\0\0\0WAVEfmt "),
            Kind::Unknown(_)
        ));
    }

    #[test]
    fn tar_by_ustar_magic() {
        let mut head = vec![0u8; 512];
        head[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(detect(&head), Kind::Tar);
        let mut gnu = vec![0u8; 512];
        gnu[257..265].copy_from_slice(b"ustar  \0");
        assert_eq!(detect(&gnu), Kind::Tar);
    }

    #[test]
    fn names_and_types_play_no_part_and_unknowns_say_what_they_look_like() {
        let says = |head: &[u8], needle: &str| match detect(head) {
            Kind::Unknown(why) => assert!(why.contains(needle), "{why}"),
            other => panic!("{other:?}"),
        };
        says(
            b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>",
            "SVG",
        );
        says(b"<?xml version='1.0'?>\n<svg>", "SVG");
        says(b"\x1f\x8b\x08\0", "gzip");
        says(b"PK\x03\x04", "zip");
        says(b"BM\0\0", "BMP");
        says(b"hello.png", "not a PNG");
        says(b"", "not a PNG");
    }
}
