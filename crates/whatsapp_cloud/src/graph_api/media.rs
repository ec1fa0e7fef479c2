//! Media files: where Meta keeps one (media info), checking a download's sha256, and the
//! multipart body of an upload.

use super::{GraphError, error_answer};
use serde_json::Value;

/// `GET /{version}/{media-id}`: where to download a media file, valid for 5 minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    pub url: String,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    pub file_size: Option<u64>,
}

/// Reads the answer to `GET /{version}/{media-id}`.
pub fn parse_media_info(http_status: u16, body: &[u8]) -> Result<MediaInfo, GraphError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(url) = json.as_ref().filter(|_| (200..300).contains(&http_status)).and_then(|j| j["url"].as_str()) {
        let j = json.as_ref().expect("checked");
        return Ok(MediaInfo {
            url: url.to_string(),
            mime_type: j["mime_type"].as_str().map(str::to_string),
            sha256: j["sha256"].as_str().map(str::to_string),
            file_size: j["file_size"].as_u64().or_else(|| j["file_size"].as_str().and_then(|s| s.parse().ok())),
        });
    }
    Err(error_answer(http_status, body))
}

/// Whether downloaded bytes are the file Meta described: the webhook's sha256 is base64 in
/// current payloads and hex in older ones, so both are accepted.
pub fn sha256_matches(bytes: &[u8], expected: &str) -> bool {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let expected = expected.trim();
    expected == base64::engine::general_purpose::STANDARD.encode(digest)
        || expected.eq_ignore_ascii_case(&hex::encode(digest))
}

/// The hex SHA-256 of downloaded bytes, as stored.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A `multipart/form-data` body for `POST /{phone_number_id}/media`: its Content-Type and bytes.
pub fn media_upload(bytes: &[u8], mime_type: &str, filename: Option<&str>) -> (String, Vec<u8>) {
    let boundary = format!("wa-{}", sha256_hex(bytes).get(..24).unwrap_or("boundary"));
    let filename = filename.unwrap_or("file").replace(['"', '\r', '\n'], "_");
    let mut body = Vec::with_capacity(bytes.len() + 512);
    for (name, value) in [("messaging_product", "whatsapp"), ("type", mime_type)] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {mime_type}\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_media_info_and_checks_downloads() {
        let info = parse_media_info(200, br#"{"messaging_product":"whatsapp","url":"https://lookaside/x","mime_type":"image/jpeg","sha256":"abc","file_size":"12","id":"1"}"#).unwrap();
        assert_eq!((info.url.as_str(), info.file_size), ("https://lookaside/x", Some(12)));
        let gone =
            parse_media_info(400, br#"{"error":{"message":"(#100) Unsupported get request","code":100}}"#).unwrap_err();
        assert_eq!(gone.code, Some(100));
        // sha256("abc"), as Meta sends it now (base64) and as older payloads did (hex).
        assert!(sha256_matches(b"abc", "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="));
        assert!(sha256_matches(b"abc", "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
        assert!(!sha256_matches(b"abd", "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="));
        let (content_type, body) = media_upload(b"PNG", "image/png", Some("a\"b.png"));
        let boundary = content_type.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("name=\"messaging_product\"\r\n\r\nwhatsapp"));
        assert!(text.contains("filename=\"a_b.png\"\r\nContent-Type: image/png\r\n\r\nPNG\r\n"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}
