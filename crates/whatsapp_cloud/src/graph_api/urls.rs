//! The Graph API URLs this crate talks to: messages, marketing messages, templates and media.

/// `base_url` and `version` joined, whatever slashes they were configured with.
fn versioned(base_url: &str, version: &str) -> String {
    format!("{}/{}", base_url.trim_end_matches('/'), version.trim_matches('/'))
}

/// The URL a channel's messages are posted to.
pub fn messages_url(base_url: &str, version: &str, phone_number_id: &str) -> String {
    format!("{}/{phone_number_id}/messages", versioned(base_url, version))
}

/// The URL of Meta's Marketing Messages API for a channel: the same request body as
/// [`messages_url`], for marketing templates only, with Meta's delivery optimisation for them.
pub fn marketing_messages_url(base_url: &str, version: &str, phone_number_id: &str) -> String {
    format!("{}/{phone_number_id}/marketing_messages", versioned(base_url, version))
}

/// The first page of a WhatsApp Business Account's templates.
pub fn templates_url(base_url: &str, version: &str, business_account_id: &str) -> String {
    format!("{}/{business_account_id}/message_templates?limit=100", versioned(base_url, version))
}

/// `GET /{version}/{media-id}`: where to ask for a media file's download URL.
pub fn media_info_url(base_url: &str, version: &str, media_id: &str, phone_number_id: &str) -> String {
    format!("{}/{media_id}?phone_number_id={phone_number_id}", versioned(base_url, version))
}

/// `POST /{version}/{phone_number_id}/media`: where a file is uploaded.
pub fn media_upload_url(base_url: &str, version: &str, phone_number_id: &str) -> String {
    format!("{}/{phone_number_id}/media", versioned(base_url, version))
}
