//! The media a simulated customer sends (`wa-sim trigger image`, the load's images): one id per
//! type, whose bytes every `wa-sim graph` serves like Meta serves a customer's upload, and whose
//! hash the webhook carries. So the run command's tour shows the photo, and every simulated
//! download ends as it would with Meta's.

/// (MIME type, media id) of each kind of media the payloads send.
const KINDS: [(&str, &str); 6] = [
    ("image/png", "1003383421387256"),
    ("video/mp4", "1003383421387257"),
    ("audio/mpeg", "1003383421387258"),
    ("audio/ogg; codecs=opus", "1003383421387259"),
    ("application/pdf", "1003383421387260"),
    ("image/webp", "1003383421387261"),
];

/// Every demo media: (id, MIME type, bytes).
pub fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    KINDS.iter().map(|&(mime, id)| (id, mime, bytes(mime))).collect()
}

/// The id of the demo media of this MIME type (the image's for an unknown one).
pub fn id(mime: &str) -> &'static str {
    KINDS.iter().find(|(m, _)| *m == mime).map_or(KINDS[0].1, |(_, id)| id)
}

/// The bytes of the demo media of this MIME type: a real picture for the image (a 64 x 48
/// gradient, so that a broken decode would show), a labelled placeholder for the others.
pub fn bytes(mime: &str) -> Vec<u8> {
    if mime == "image/png" { gradient_png(64, 48) } else { format!("wa-sim demo media ({mime})").into_bytes() }
}

/// A truecolour PNG of a gradient, its image data in stored (uncompressed) deflate blocks.
fn gradient_png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[(x * 4 % 256) as u8, (y * 5 % 256) as u8, 160]);
        }
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, no filter method, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of `data` in stored blocks (RFC 1950/1951), which every decoder reads.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_the_standard_ones() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // zlib.compress(b"abc", 0) from Python's standard library, byte for byte but the header.
        assert_eq!(zlib_stored(b"abc")[2..], [1, 3, 0, 252, 255, b'a', b'b', b'c', 2, 77, 1, 39]);
    }

    #[test]
    fn the_image_is_a_png_of_its_size_and_every_kind_has_its_own_id() {
        let png = bytes("image/png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 64);
        let ids: std::collections::BTreeSet<_> = all().into_iter().map(|(id, ..)| id).collect();
        assert_eq!(ids.len(), KINDS.len());
        assert_eq!(id("audio/mpeg"), "1003383421387258");
    }
}
