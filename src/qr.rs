//! QR codes of claim links, as SVG and as PNG. The PNG is written here (a
//! grayscale image: IHDR, one zlib IDAT, IEND) rather than with an image
//! library: it is a few lines, and flate2 is here already.

use std::io::Write;

use qrcode::{Color, QrCode};

use crate::error::{Error, Result};

/// Pixels per module in the PNG, and the quiet zone around the code in modules.
const SCALE: usize = 8;
const QUIET: usize = 4;

/// Low error correction: it leaves the most room (2,953 bytes), and a
/// link on a screen or paper is read close up.
fn code(data: &str) -> Result<QrCode> {
    QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::L).map_err(|e| {
        Error::InvalidArgument(format!(
            "{} bytes are too long for a QR code ({e}; at most 2,953)",
            data.len()
        ))
    })
}

/// Whether `data` fits in a QR code.
pub fn fits(data: &str) -> bool {
    code(data).is_ok()
}

/// The QR code of `data` as an SVG document.
pub fn svg(data: &str) -> Result<String> {
    Ok(code(data)?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .build())
}

/// The QR code of `data` as a PNG (8-bit grayscale).
pub fn png(data: &str) -> Result<Vec<u8>> {
    let code = code(data)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    // Each row: filter byte 0, then one byte per pixel.
    let mut raw = Vec::with_capacity(side * (side + 1));
    for y in 0..side {
        raw.push(0);
        let my = (y / SCALE).checked_sub(QUIET).filter(|m| *m < modules);
        for x in 0..side {
            let mx = (x / SCALE).checked_sub(QUIET).filter(|m| *m < modules);
            let dark = matches!((mx, my), (Some(mx), Some(my)) if colors[my * modules + mx] == Color::Dark);
            raw.push(if dark { 0 } else { 255 });
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)
        .map_err(|e| Error::Internal(format!("compressing a QR code: {e}")))?;
    let idat = z
        .finish()
        .map_err(|e| Error::Internal(format!("compressing a QR code: {e}")))?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend((side as u32).to_be_bytes());
    ihdr.extend((side as u32).to_be_bytes());
    // Bit depth 8, color type 0 (grayscale), compression, filter, no interlace.
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr.as_slice()), (b"IDAT", &idat), (b"IEND", &[])] {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_png_is_a_well_formed_image_of_the_code() {
        let png = png("http://127.0.0.1:8080/didcomm?_oob=eyJ0eXBlIjoi").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let side = u32::from_be_bytes(png[16..20].try_into().unwrap()) as usize;
        assert_eq!(side % SCALE, 0);
        // The IHDR's CRC covers its type and data.
        let mut crc = flate2::Crc::new();
        crc.update(&png[12..29]);
        assert_eq!(crc.sum().to_be_bytes(), png[29..33]);
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        // The pixels decompress to one filter byte and `side` pixels per row,
        // white at the corner (the quiet zone).
        let idat_len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::ZlibDecoder::new(&png[41..41 + idat_len]),
            &mut raw,
        )
        .unwrap();
        assert_eq!(raw.len(), side * (side + 1));
        assert_eq!(raw[1], 255);
        assert!(raw.contains(&0), "some dark modules");
        assert!(svg("x").unwrap().starts_with("<?xml"));
    }
}
