//! Recipient numbers: whatever an agent types in, sent to Meta as `+E.164`.
//!
//! Meta accepts numbers without `+`, but then prepends the *business* number's country
//! code, which can deliver to the wrong person. So every number goes out as `+` and digits.

use std::fmt;

/// Why a recipient was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPhone {
    pub input: String,
    pub reason: &'static str,
}

impl fmt::Display for InvalidPhone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "recipient {:?} is not a phone number: {}", self.input, self.reason)
    }
}

impl std::error::Error for InvalidPhone {}

/// A hint for users who hit [`InvalidPhone`].
pub const HINT: &str =
    "Give the full international number with its country code, e.g. '15551234567' or '+1 555-123-4567'.";

/// Normalises a phone number to `+E.164`: `15551234567`, `+1 555-123-4567` and
/// `+1 (555) 123-4567` all become `+15551234567`. Spaces, dots, hyphens and parentheses are
/// dropped; a leading `00` international prefix is read as `+`. E.164 allows at most 15
/// digits; fewer than 8 cannot carry a country code and a subscriber number.
pub fn normalize(input: &str) -> Result<String, InvalidPhone> {
    let err = |reason| InvalidPhone { input: input.to_string(), reason };
    let trimmed = input.trim();
    let rest = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            '+' => return Err(err("'+' may only come first")),
            _ => {
                return Err(err("only digits, spaces, '+', '-', '.', '(' and ')' are allowed"));
            }
        }
    }
    if !trimmed.starts_with('+')
        && let Some(international) = digits.strip_prefix("00")
    {
        digits = international.to_string();
    }
    if digits.is_empty() {
        return Err(err("it has no digits"));
    }
    if digits.starts_with('0') {
        return Err(err("it starts with 0, so it lacks the country code"));
    }
    if digits.len() < 8 {
        return Err(err("it has fewer than 8 digits, too few for a country code and a number"));
    }
    if digits.len() > 15 {
        return Err(err("it has more than 15 digits, the E.164 maximum"));
    }
    Ok(format!("+{digits}"))
}

/// Whom a message goes to: a phone number (sent as `to`), since May 2026 a business-scoped
/// user id (BSUID, sent as `recipient`) for users who hide their number, or a group of the
/// Groups API (sent as `to` with `recipient_type: "group"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Phone(String),
    Bsuid(String),
    Group(String),
}

/// Shortest and longest group id taken as one. Meta's are opaque base64 strings of 40 to 60
/// characters (`Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD`); a mistyped phone
/// number is far shorter, so it still gets the phone number's error.
const GROUP_ID_CHARS: std::ops::RangeInclusive<usize> = 16..=256;

/// Whether `s` has the shape of a group id: base64 characters, at least one letter, no dot
/// (BSUIDs have one) and not a leading `+` (phone numbers may).
fn looks_like_group_id(s: &str) -> bool {
    GROUP_ID_CHARS.contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-=+/".contains(&b))
}

impl Recipient {
    /// A BSUID is a country code, a dot and up to 128 letters and digits
    /// (`US.13491208655302741918`, parent ids `US.ENT.11815799212886844830`); anything else must be
    /// a phone number, normalised by [`normalize`].
    pub fn parse(input: &str) -> Result<Recipient, InvalidPhone> {
        let s = input.trim();
        let bytes = s.as_bytes();
        let looks_like_bsuid = bytes.len() > 3
            && bytes[..2].iter().all(u8::is_ascii_uppercase)
            && bytes[2] == b'.'
            && s.len() <= 2 + 1 + 4 + 128
            && s[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
        if looks_like_bsuid {
            return Ok(Recipient::Bsuid(s.to_string()));
        }
        if looks_like_group_id(s) {
            return Ok(Recipient::Group(s.to_string()));
        }
        normalize(input).map(Recipient::Phone)
    }

    /// The stored form: `+E.164`, the BSUID or the group id.
    pub fn as_str(&self) -> &str {
        match self {
            Recipient::Phone(p) | Recipient::Bsuid(p) | Recipient::Group(p) => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_ways_of_writing_a_number() {
        for input in
            ["15551234567", "+15551234567", "+1 555-123-4567", "+1 (555) 123-4567", "1.555.123.4567", " 0015551234567 "]
        {
            assert_eq!(normalize(input).as_deref(), Ok("+15551234567"), "{input}");
        }
        assert_eq!(normalize("+91 98765 43210").as_deref(), Ok("+919876543210"));
    }

    #[test]
    fn tells_business_scoped_ids_from_numbers() {
        assert_eq!(Recipient::parse("US.13491208655302741918"), Ok(Recipient::Bsuid("US.13491208655302741918".into())));
        assert_eq!(
            Recipient::parse("US.ENT.11815799212886844830"),
            Ok(Recipient::Bsuid("US.ENT.11815799212886844830".into()))
        );
        assert_eq!(Recipient::parse("+1 555 123 4567"), Ok(Recipient::Phone("+15551234567".into())));
        assert!(Recipient::parse("us.123").is_err());
    }

    #[test]
    fn tells_group_ids_from_numbers() {
        for id in [
            "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD",
            "HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA",
        ] {
            assert_eq!(Recipient::parse(id), Ok(Recipient::Group(id.into())));
        }
        // A number with a typo is still a number's error, not a group.
        for typo in ["1555123456x", "+1555123456789abc", "hello", "1555 123 4567 ext 2"] {
            assert!(Recipient::parse(typo).unwrap_err().to_string().contains("is not a phone number"), "{typo}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_a_number() {
        for (input, reason_part) in [
            ("", "no digits"),
            ("hello", "only digits"),
            ("1555123456x", "only digits"),
            ("1+5551234567", "'+' may only come first"),
            ("555-1234", "fewer than 8"),
            ("0555 123 4567", "starts with 0"),
            ("1234567890123456", "more than 15"),
        ] {
            let e = normalize(input).unwrap_err();
            assert!(e.reason.contains(reason_part), "{input}: {}", e.reason);
            assert!(e.to_string().contains("is not a phone number"));
        }
    }
}
