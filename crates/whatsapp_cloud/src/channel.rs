//! The four credentials of a channel (the seed's "Get Your Credentials"), checked before
//! they are stored, so that a pasted-in-the-wrong-box mistake fails at `wa_add_channel`
//! instead of as a silent "Signature mismatch" days later.

use std::fmt;

/// A credential or name that cannot be right, with the field it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub problem: String,
    pub hint: &'static str,
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.problem)
    }
}

impl std::error::Error for InvalidField {}

fn invalid(field: &'static str, problem: impl Into<String>, hint: &'static str) -> InvalidField {
    InvalidField { field, problem: problem.into(), hint }
}

/// A channel name: it appears in the webhook URL path, so it is kept to lowercase letters,
/// digits, `_` and `-`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), InvalidField> {
    const HINT: &str = "Use 1 to 63 lowercase letters, digits, '_' or '-', e.g. 'support'.";
    if name.is_empty() || name.len() > 63 {
        return Err(invalid("name", format!("{name:?} must be 1 to 63 characters long"), HINT));
    }
    let ok_first = name.as_bytes()[0].is_ascii_lowercase() || name.as_bytes()[0].is_ascii_digit();
    let ok_rest = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok_first || !ok_rest {
        return Err(invalid("name", format!("{name:?} has characters other than a-z, 0-9, '_' and '-'"), HINT));
    }
    Ok(())
}

/// Phone Number ID: the numeric id under "From" in WhatsApp -> API Setup (not the phone number).
pub fn validate_phone_number_id(id: &str) -> Result<(), InvalidField> {
    const HINT: &str = "Copy the Phone Number ID from WhatsApp -> API Setup, under \"From\" (a numeric id like 123456789012345, not the phone number itself).";
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("phone_number_id", format!("{id:?} is not a numeric id"), HINT));
    }
    Ok(())
}

/// Access Token: a temporary or System User token. Opaque; we only refuse what cannot be one.
pub fn validate_access_token(token: &str) -> Result<(), InvalidField> {
    const HINT: &str = "Copy the access token from WhatsApp -> API Setup, or generate a permanent one for a System User in Business Settings.";
    if token.len() < 16 {
        return Err(invalid("access_token", "it is shorter than any token Meta issues", HINT));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("access_token", "it contains spaces or line breaks (a copy-paste slip?)", HINT));
    }
    Ok(())
}

/// App Secret: 32 hex digits from App Dashboard -> Settings -> Basic. The seed's most common
/// signature problem is a secret copied from the wrong page, so the shape is checked.
pub fn validate_app_secret(secret: &str) -> Result<(), InvalidField> {
    const HINT: &str = "Copy the App Secret from App Dashboard -> Settings -> Basic (click Show); it is 32 hex characters. It is not the access token from API Setup.";
    if secret.len() != 32 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("app_secret", "it is not 32 hex characters", HINT));
    }
    Ok(())
}

/// Verify Token: any string you make up; it travels in a URL query, so no spaces or controls.
pub fn validate_verify_token(token: &str) -> Result<(), InvalidField> {
    const HINT: &str = "Make up a string of 1 to 200 characters without spaces, e.g. my_secret_verify_token_2024, and enter the same string in Meta's webhook settings.";
    if token.is_empty() || token.len() > 200 {
        return Err(invalid("verify_token", "it must be 1 to 200 characters long", HINT));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("verify_token", "it contains spaces or control characters", HINT));
    }
    Ok(())
}

/// WhatsApp Business Account id: numeric, from WhatsApp Manager (needed for templates).
pub fn validate_business_account_id(id: &str) -> Result<(), InvalidField> {
    const HINT: &str = "Copy the WhatsApp Business Account ID from WhatsApp -> API Setup or WhatsApp Manager -> Account tools (a numeric id).";
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("waba_id", format!("{id:?} is not a numeric id"), HINT));
    }
    Ok(())
}

/// Checks every field of a new channel, first failure wins.
pub fn validate(
    name: &str,
    phone_number_id: &str,
    access_token: &str,
    app_secret: &str,
    verify_token: &str,
) -> Result<(), InvalidField> {
    validate_name(name)?;
    validate_phone_number_id(phone_number_id)?;
    validate_access_token(access_token)?;
    validate_app_secret(app_secret)?;
    validate_verify_token(verify_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "EAAGm0PX4ZCpsBAKZC1234567890abcdef";
    const SECRET: &str = "0123456789abcdef0123456789ABCDEF";

    #[test]
    fn accepts_credentials_shaped_like_the_seeds() {
        assert_eq!(validate("support", "123456789012345", TOKEN, SECRET, "my_secret_verify_token_2024"), Ok(()));
        assert_eq!(validate("sales-2", "1", TOKEN, SECRET, "t"), Ok(()));
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let field = |r: Result<(), InvalidField>| r.unwrap_err().field;
        assert_eq!(field(validate("Support!", "1", TOKEN, SECRET, "t")), "name");
        assert_eq!(field(validate("", "1", TOKEN, SECRET, "t")), "name");
        assert_eq!(field(validate("-x", "1", TOKEN, SECRET, "t")), "name");
        assert_eq!(field(validate("s", "+15551234567", TOKEN, SECRET, "t")), "phone_number_id");
        assert_eq!(field(validate("s", "1", "short", SECRET, "t")), "access_token");
        assert_eq!(field(validate("s", "1", "EAAG abc def ghi jkl mno", SECRET, "t")), "access_token");
        // The access token pasted into the app secret box: the seed's "wrong app_secret".
        let e = validate("s", "1", TOKEN, TOKEN, "t").unwrap_err();
        assert_eq!(e.field, "app_secret");
        assert!(e.hint.contains("Settings -> Basic"));
        assert_eq!(field(validate("s", "1", TOKEN, SECRET, "")), "verify_token");
        assert_eq!(field(validate("s", "1", TOKEN, SECRET, "my token")), "verify_token");
    }
}
