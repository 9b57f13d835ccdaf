//! Image files to RGB bytes, as PIL's `Image.open(..).convert("RGB")` gives them.
//!
//! JPEG goes through libjpeg-turbo's decoder (the `mozjpeg` crate builds it from
//! source): the same integer IDCT and fancy upsampling as PIL, so the pixels are
//! bit-identical; a CMYK JPEG is converted as PIL converts it. Any libjpeg warning
//! (truncated or corrupt data) is an error, in libjpeg's words.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// An 8-bit RGB image, rows top to bottom, `[height, width, 3]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// The most pixels an image may have (a 10000 x 10000 photograph): a header that
/// claims more is refused before anything that size is allocated.
pub const MAX_PIXELS: usize = 100_000_000;

/// Decodes a JPEG or PNG file, chosen by its content, not its name. A file over
/// [`crate::files::IMAGE`] bytes, or that is not a regular file, is refused unread.
pub fn open(path: &Path) -> Result<RgbImage> {
    let bytes = crate::files::read(path, crate::files::IMAGE)?;
    decode(&bytes).with_context(|| format!("{}: not a readable image", path.display()))
}

/// Refuses dimensions beyond [`MAX_PIXELS`] (or zero).
fn check_size(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 || width.saturating_mul(height) > MAX_PIXELS {
        bail!(
            "the header says {width} x {height} pixels: empty, or over the limit of {} million",
            MAX_PIXELS / 1_000_000
        );
    }
    Ok(())
}

pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes)
    } else {
        bail!("neither JPEG nor PNG data")
    }
}

/// libjpeg's own text for the message it is raising.
fn jpeg_text(cinfo: &mut mozjpeg_sys::jpeg_common_struct) -> String {
    // libjpeg writes up to JMSG_LENGTH_MAX (200) bytes; the binding's type says a
    // shared 80-byte array, so the function is called through a pointer type.
    type Format = unsafe extern "C-unwind" fn(&mut mozjpeg_sys::jpeg_common_struct, *mut u8);
    let mut buffer = [0u8; 256];
    let format = unsafe { cinfo.err.as_ref().and_then(|e| e.format_message) };
    if let Some(format) = format {
        // SAFETY: the same function, its buffer argument a pointer either way, and
        // the buffer longer than libjpeg's longest message.
        unsafe {
            let format: Format = std::mem::transmute(format);
            format(cinfo, buffer.as_mut_ptr());
        }
    }
    let text =
        std::ffi::CStr::from_bytes_until_nul(&buffer).map(|t| t.to_string_lossy().into_owned());
    text.unwrap_or_default()
}

#[cold]
extern "C-unwind" fn jpeg_fatal(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    let code = unsafe { cinfo.err.as_ref().map_or(-1, |e| e.msg_code) };
    let text = jpeg_text(cinfo);
    std::panic::resume_unwind(Box::new(format!("{text} (libjpeg error {code})")));
}

#[cold]
extern "C-unwind" fn jpeg_message(
    cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    // level -1 is a warning: corrupt or truncated data that libjpeg would paper over.
    if level < 0 {
        let code = unsafe { cinfo.err.as_ref().map_or(-1, |e| e.msg_code) };
        let text = jpeg_text(cinfo);
        std::panic::resume_unwind(Box::new(format!(
            "corrupt or truncated JPEG data: {text} (libjpeg warning {code})"
        )));
    }
}

/// Decodes a JPEG as PIL does: RGB and greyscale through libjpeg's conversions,
/// CMYK (and YCCK) as four inverted channels (Adobe's convention, which PIL
/// assumes for every 4-channel JPEG) converted by [`cmyk_to_rgb`].
fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage> {
    let result = std::panic::catch_unwind(|| -> Result<RgbImage> {
        let mut err: mozjpeg_sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
        unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
        err.error_exit = Some(jpeg_fatal);
        err.emit_message = Some(jpeg_message);
        let decoder = mozjpeg::Decompress::with_err(err).from_mem(bytes)?;
        check_size(decoder.width(), decoder.height())?;
        let cmyk = matches!(
            decoder.color_space(),
            mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK
        );
        let mut started = match cmyk {
            true => decoder.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK)?,
            false => decoder.rgb()?,
        };
        let (width, height) = (started.width(), started.height());
        let channels = if cmyk { 4 } else { 3 };
        let pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        if pixels.len() != width * height * channels {
            bail!(
                "JPEG data ends early: {} of {} bytes of pixels",
                pixels.len(),
                width * height * channels
            );
        }
        Ok(RgbImage {
            width,
            height,
            pixels: if cmyk { cmyk_to_rgb(&pixels) } else { pixels },
        })
    });
    match result {
        Ok(image) => image,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "JPEG decoder failed".into());
            bail!("{message}")
        }
    }
}

/// PIL's `convert("RGB")` of a CMYK JPEG as libjpeg decodes it: the channels are
/// inverted first (PIL's `CMYK;I` raw mode), then `r = nk - nk * c / 255` with
/// `nk = 255 - k`, rounded as PIL's `MULDIV255`.
pub fn cmyk_to_rgb(decoded: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    decoded
        .chunks_exact(4)
        .flat_map(|p| {
            let [c, m, y, k] = [p[0], p[1], p[2], p[3]].map(|v| 255 - u32::from(v));
            let nk = 255 - k;
            [c, m, y].map(|v| nk.saturating_sub(muldiv255(v, nk)) as u8)
        })
        .collect()
}

fn decode_png(bytes: &[u8]) -> Result<RgbImage> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info()?;
    check_size(reader.info().width as usize, reader.info().height as usize)?;
    let mut buf = vec![0; reader.output_buffer_size().context("PNG too large")?];
    let info = reader.next_frame(&mut buf)?;
    let (width, height) = (info.width as usize, info.height as usize);
    let data = &buf[..info.buffer_size()];
    // convert("RGB"): grey is replicated, alpha is dropped (not composited).
    let pixels: Vec<u8> = match info.color_type {
        png::ColorType::Rgb => data.to_vec(),
        png::ColorType::Rgba => data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => data.iter().flat_map(|&v| [v, v, v]).collect(),
        png::ColorType::GrayscaleAlpha => data
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        png::ColorType::Indexed => bail!("palette PNG was not expanded"),
    };
    Ok(RgbImage {
        width,
        height,
        pixels,
    })
}
