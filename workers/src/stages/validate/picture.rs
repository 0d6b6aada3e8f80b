//! Pictures: the header's size is checked against the limits before any pixel is decoded
//! (a decompression bomb declares a huge size in a few bytes), then the whole picture is
//! decoded, every frame of an animation included, under explicit decoder limits. A PNG is
//! decoded a row at a time into one row's buffer, as nothing keeps its pixels: the same
//! checks as a whole decode, without 150 MB in memory for 50 megapixels.

use std::io::{BufReader, Read, Seek, SeekFrom};

use image::codecs::gif::GifDecoder;
use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, ImageError, Limits};
use k8or::config::ValidationLimits;

use super::checks::{Check, Problems};
use super::detect::PictureFormat;

/// An animation may decode at most this many times `max_pixels` over all its frames.
const ANIMATION_PIXEL_FACTOR: u64 = 4;

fn limits(l: &ValidationLimits) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(l.max_width);
    limits.max_image_height = Some(l.max_height);
    limits.max_alloc = Some(l.max_alloc_bytes);
    limits
}

/// Checks a declared size against the limits; every limit broken is a problem.
pub fn check_dimensions(width: u32, height: u32, l: &ValidationLimits, problems: &mut Problems) {
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 {
        problems.push(
            Check::PictureCorrupt,
            format!("declares an empty size {width}x{height}"),
        );
    }
    if width > l.max_width {
        problems.push(
            Check::PictureTooLarge,
            format!("width {width} is over the {} limit", l.max_width),
        );
    }
    if height > l.max_height {
        problems.push(
            Check::PictureTooLarge,
            format!("height {height} is over the {} limit", l.max_height),
        );
    }
    if pixels > l.max_pixels {
        problems.push(
            Check::PictureTooLarge,
            format!(
                "{width}x{height} is {pixels} pixels, over the {} limit",
                l.max_pixels
            ),
        );
    }
}

fn decode_problem(e: &ImageError, problems: &mut Problems) {
    match e {
        ImageError::Limits(l) => problems.push(
            Check::PictureTooLarge,
            format!("over the decoder limits: {l}"),
        ),
        other => problems.push(Check::PictureCorrupt, format!("cannot be decoded: {other}")),
    }
}

/// Decodes every frame; false (with a problem) if one fails or the total is too much.
fn decode_frames<'a>(
    decoder: impl AnimationDecoder<'a>,
    budget: u64,
    problems: &mut Problems,
) -> bool {
    let mut decoded = 0u64;
    for frame in decoder.into_frames() {
        match frame {
            Ok(f) => {
                let (w, h) = f.buffer().dimensions();
                decoded += u64::from(w) * u64::from(h);
                if decoded > budget {
                    problems.push(
                        Check::PictureTooLarge,
                        format!("its frames decode to more than {budget} pixels"),
                    );
                    return false;
                }
            }
            Err(e) => {
                decode_problem(&e, problems);
                return false;
            }
        }
    }
    true
}

/// A PNG decoder's failure as a problem, as [`decode_problem`] words an `image` one.
fn png_problem(e: &png::DecodingError, problems: &mut Problems) {
    match e {
        png::DecodingError::LimitsExceeded => problems.push(
            Check::PictureTooLarge,
            "over the decoder limits: the memory limit was exceeded",
        ),
        other => problems.push(Check::PictureCorrupt, format!("cannot be decoded: {other}")),
    }
}

/// Decodes a PNG's rows one after another into one row buffer, as `image` would decode
/// them (text chunks read, `EXPAND`, the same memory limit) to the end of the image data;
/// true if all did.
fn decode_png_rows(
    file: &mut (impl Read + Seek),
    l: &ValidationLimits,
    problems: &mut Problems,
) -> std::io::Result<bool> {
    file.rewind()?;
    let bytes = usize::try_from(l.max_alloc_bytes).unwrap_or(usize::MAX);
    let mut decoder = png::Decoder::new_with_limits(BufReader::new(file), png::Limits { bytes });
    decoder.set_ignore_text_chunk(false);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = match decoder.read_info() {
        Ok(reader) => reader,
        Err(e) => {
            png_problem(&e, problems);
            return Ok(false);
        }
    };
    loop {
        match reader.next_row() {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(true),
            Err(e) => {
                png_problem(&e, problems);
                return Ok(false);
            }
        }
    }
}

/// Checks then decodes one picture from its spooled copy; `Some((width, height))` if valid.
pub fn validate(
    format: PictureFormat,
    file: &mut (impl Read + Seek),
    l: &ValidationLimits,
    problems: &mut Problems,
) -> std::io::Result<Option<(u32, u32)>> {
    let encoded = file.seek(SeekFrom::End(0))?;
    file.rewind()?;
    let reader = BufReader::new(&mut *file);
    // The JPEG decoder reads the whole file into memory first.
    if format == PictureFormat::Jpeg && encoded > l.max_alloc_bytes {
        problems.push(
            Check::PictureTooLarge,
            format!(
                "the JPEG is {encoded} bytes, over the {}-byte decode limit",
                l.max_alloc_bytes
            ),
        );
        return Ok(None);
    }
    macro_rules! open {
        ($decoder:expr) => {
            match $decoder {
                Ok(d) => d,
                Err(e) => {
                    decode_problem(&e, problems);
                    return Ok(None);
                }
            }
        };
    }
    macro_rules! checked {
        ($d:ident) => {{
            let (w, h) = $d.dimensions();
            check_dimensions(w, h, l, problems);
            // Decoders treat `max_alloc` as a hint; the output buffer is checked here.
            let need = $d.total_bytes();
            if need > l.max_alloc_bytes {
                problems.push(
                    Check::PictureTooLarge,
                    format!(
                        "decoding needs {need} bytes, over the {}-byte limit",
                        l.max_alloc_bytes
                    ),
                );
            }
            if !problems.is_empty() {
                return Ok(None);
            }
            if let Err(e) = $d.set_limits(limits(l)) {
                decode_problem(&e, problems);
                return Ok(None);
            }
            (w, h)
        }};
    }
    let budget = l.max_pixels.saturating_mul(ANIMATION_PIXEL_FACTOR);
    let dims = match format {
        PictureFormat::Png => {
            let mut d = open!(PngDecoder::new(reader));
            let dims = checked!(d);
            drop(d);
            return Ok(decode_png_rows(file, l, problems)?.then_some(dims));
        }
        PictureFormat::Jpeg => {
            let mut d = open!(JpegDecoder::new(reader));
            let dims = checked!(d);
            DynamicImage::from_decoder(d).map(|_| dims)
        }
        PictureFormat::Gif => {
            let mut d = open!(GifDecoder::new(reader));
            let dims = checked!(d);
            return Ok(decode_frames(d, budget, problems).then_some(dims));
        }
        PictureFormat::WebP => {
            let mut d = open!(WebPDecoder::new(reader));
            let dims = checked!(d);
            if d.has_animation() {
                return Ok(decode_frames(d, budget, problems).then_some(dims));
            }
            DynamicImage::from_decoder(d).map(|_| dims)
        }
    };
    match dims {
        Ok(dims) => Ok(Some(dims)),
        Err(e) => {
            decode_problem(&e, problems);
            Ok(None)
        }
    }
}
