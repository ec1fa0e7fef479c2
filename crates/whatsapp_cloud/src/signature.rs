//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw POST body, keyed with the app secret.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header Meta signs every webhook POST with.
pub const HEADER: &str = "X-Hub-Signature-256";
const PREFIX: &str = "sha256=";

/// Why a signature header was refused. The variants name the likely cause, because
/// "Signature mismatch" alone sends users hunting (the seed's "Common issues").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// No `X-Hub-Signature-256` header: the sender is not Meta, or a proxy stripped it.
    Missing,
    /// The header does not start with `sha256=` followed by 64 hex digits.
    Malformed,
    /// Well-formed, but computed with another secret: almost always the wrong app secret.
    WrongSecret,
}

impl Mismatch {
    /// One line for the server log: the cause and what to do about it.
    pub fn likely_cause(self) -> &'static str {
        match self {
            Mismatch::Missing => {
                "no X-Hub-Signature-256 header: the request did not come from Meta, or a proxy dropped the header"
            }
            Mismatch::Malformed => {
                "X-Hub-Signature-256 is not 'sha256=' followed by 64 hex digits: the request did not come from Meta"
            }
            Mismatch::WrongSecret => {
                "wrong app_secret: copy it from App Dashboard -> Settings -> Basic -> App Secret, not from API Setup"
            }
        }
    }
}

/// The header value Meta would send for `body`: `sha256=` and 64 lowercase hex digits.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(app_secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `header` (the `X-Hub-Signature-256` value, if any) against `body`, in constant time.
///
/// Meta signs the exact bytes it sends. Its Graph webhook docs also say the signature is
/// computed over an "escaped unicode version of the payload"; so when the raw bytes do not
/// match and the body has non-ASCII bytes, the `\uXXXX`-escaped form is tried too.
pub fn verify(app_secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), Mismatch> {
    let header = header.ok_or(Mismatch::Missing)?.trim();
    let hex_digest = header.strip_prefix(PREFIX).ok_or(Mismatch::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(Mismatch::Malformed);
    }
    // Meta sends lowercase; accepting uppercase costs nothing and cannot weaken the check.
    let expected = hex::decode(hex_digest).map_err(|_| Mismatch::Malformed)?;
    if mac_matches(app_secret, body, &expected) {
        return Ok(());
    }
    if !body.is_ascii()
        && let Some(escaped) = escape_non_ascii(body)
        && mac_matches(app_secret, &escaped, &expected)
    {
        return Ok(());
    }
    Err(Mismatch::WrongSecret)
}

fn mac_matches(app_secret: &[u8], body: &[u8], expected: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(app_secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(expected).is_ok() // constant-time comparison
}

/// `body` with every non-ASCII character written as `\uXXXX` (lowercase hex, UTF-16 code
/// units, so characters outside the BMP become a surrogate pair). `None` if not UTF-8.
pub fn escape_non_ascii(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answer from RFC 4231 test case 2 (key "Jefe").
    #[test]
    fn sign_matches_rfc4231() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_own_signature_and_rejects_others() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign(b"s3cret", body);
        assert_eq!(verify(b"s3cret", body, Some(&header)), Ok(()));
        assert_eq!(verify(b"other", body, Some(&header)), Err(Mismatch::WrongSecret));
        let mut tampered = body.to_vec();
        tampered[3] ^= 1;
        assert_eq!(verify(b"s3cret", &tampered, Some(&header)), Err(Mismatch::WrongSecret));
    }

    #[test]
    fn verify_names_missing_and_malformed_headers() {
        let body = b"{}";
        let good = sign(b"k", body);
        assert_eq!(verify(b"k", body, None), Err(Mismatch::Missing));
        assert_eq!(verify(b"k", body, Some(&good[7..])), Err(Mismatch::Malformed));
        assert_eq!(verify(b"k", body, Some(&good.replace("sha256=", "sha1="))), Err(Mismatch::Malformed));
        assert_eq!(verify(b"k", body, Some("sha256=zz")), Err(Mismatch::Malformed));
        assert_eq!(verify(b"k", body, Some(&format!("sha256={}", "g".repeat(64)))), Err(Mismatch::Malformed));
        assert_eq!(verify(b"k", body, Some(&good.to_uppercase().replace("SHA256=", "sha256="))), Ok(()));
    }

    #[test]
    fn escaped_unicode_form_is_accepted() {
        let raw = "{\"body\":\"äöå 👍\"}".as_bytes();
        let escaped = escape_non_ascii(raw).unwrap();
        assert_eq!(std::str::from_utf8(&escaped).unwrap(), r#"{"body":"\u00e4\u00f6\u00e5 \ud83d\udc4d"}"#);
        // Meta signed the escaped form, but sent the raw UTF-8 bytes.
        let header = sign(b"k", &escaped);
        assert_eq!(verify(b"k", raw, Some(&header)), Ok(()));
    }
}
