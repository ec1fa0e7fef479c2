//! The GET subscription handshake: Meta proves a webhook URL is the channel's before it posts
//! to it, and this answers only when the verify token matches.

/// Why a subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..`)
/// was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// `hub.mode` is missing or not `subscribe`.
    NotSubscribe,
    /// `hub.challenge` is missing or empty: nothing to echo.
    NoChallenge,
    /// `hub.challenge` is not what Meta sends (digits and URL-safe characters, at most
    /// [`MAX_CHALLENGE`]): echoing anything else would let a stranger make this server
    /// answer with text of their choosing.
    BadChallenge,
    /// The verify token differs from the channel's.
    TokenMismatch,
}

/// The longest `hub.challenge` echoed (Meta's are ten-digit numbers).
pub const MAX_CHALLENGE: usize = 64;

/// Answers Meta's handshake: `Ok(challenge)` to echo back as the 200 body, exactly as sent.
pub fn verify_subscription(query: &str, verify_token: &str) -> Result<String, HandshakeError> {
    let (mut mode, mut token, mut challenge) = (None, None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(key).as_str() {
            "hub.mode" => mode = Some(percent_decode(value)),
            "hub.verify_token" => token = Some(percent_decode(value)),
            "hub.challenge" => challenge = Some(percent_decode(value)),
            _ => {}
        }
    }
    if mode.as_deref() != Some("subscribe") {
        return Err(HandshakeError::NotSubscribe);
    }
    if !constant_time_eq(token.unwrap_or_default().as_bytes(), verify_token.as_bytes()) {
        return Err(HandshakeError::TokenMismatch);
    }
    match challenge {
        Some(c) if c.is_empty() => Err(HandshakeError::NoChallenge),
        Some(c) if c.len() <= MAX_CHALLENGE && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) => {
            Ok(c)
        }
        Some(_) => Err(HandshakeError::BadChallenge),
        None => Err(HandshakeError::NoChallenge),
    }
}

/// Compares two byte strings without an early exit, so timing does not reveal a prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_byte = || match bytes.get(i + 1..i + 3) {
            Some(h) if h.iter().all(u8::is_ascii_hexdigit) => u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok(),
            _ => None,
        };
        match (bytes[i], hex_byte()) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_challenge_of_metas_shape_is_echoed() {
        let q = |c: &str| format!("hub.mode=subscribe&hub.verify_token=t&hub.challenge={c}");
        assert_eq!(verify_subscription(&q("1158201444"), "t"), Ok("1158201444".into()));
        assert_eq!(verify_subscription(&q("abc-_.~XYZ"), "t"), Ok("abc-_.~XYZ".into()));
        assert_eq!(verify_subscription(&q("%3Cscript%3E"), "t"), Err(HandshakeError::BadChallenge));
        assert_eq!(verify_subscription(&q(&"9".repeat(65)), "t"), Err(HandshakeError::BadChallenge));
        assert_eq!(verify_subscription(&q(""), "t"), Err(HandshakeError::NoChallenge));
    }

    #[test]
    fn handshake_echoes_the_challenge_only_for_the_right_token() {
        let q = "hub.mode=subscribe&hub.verify_token=my%20token%2B1&hub.challenge=1158201444";
        assert_eq!(verify_subscription(q, "my token+1").as_deref(), Ok("1158201444"));
        assert_eq!(verify_subscription(q, "other"), Err(HandshakeError::TokenMismatch));
        assert_eq!(
            verify_subscription("hub.mode=unsubscribe&hub.verify_token=t&hub.challenge=c", "t"),
            Err(HandshakeError::NotSubscribe)
        );
        assert_eq!(verify_subscription("hub.mode=subscribe&hub.verify_token=t", "t"), Err(HandshakeError::NoChallenge));
        assert_eq!(verify_subscription("hub.mode=subscribe&hub.challenge=c", "t"), Err(HandshakeError::TokenMismatch));
        // A malformed escape stays as it is, and '%' is not in a challenge Meta sends.
        assert_eq!(
            verify_subscription("hub.mode=subscribe&hub.verify_token=t&hub.challenge=a%zzb", "t"),
            Err(HandshakeError::BadChallenge)
        );
    }
}
