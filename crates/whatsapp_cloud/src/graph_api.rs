//! The Graph API's `/{version}/{phone_number_id}/messages` endpoint: request bodies, answers
//! and errors, and what to do about each error.

use crate::phone::Recipient;
use serde_json::{Value, json};
use std::time::Duration;

/// The URL a channel's messages are posted to.
pub fn messages_url(base_url: &str, version: &str, phone_number_id: &str) -> String {
    format!("{}/{}/{}/messages", base_url.trim_end_matches('/'), version.trim_matches('/'), phone_number_id)
}

/// The URL of Meta's Marketing Messages API for a channel: the same request body as
/// [`messages_url`], for marketing templates only, with Meta's delivery optimisation for them.
pub fn marketing_messages_url(base_url: &str, version: &str, phone_number_id: &str) -> String {
    format!("{}/{}/{}/marketing_messages", base_url.trim_end_matches('/'), version.trim_matches('/'), phone_number_id)
}

/// What a send carries in `biz_opaque_callback_data` (Meta echoes it on every status of the
/// message): the outbox id, so that a status can tell which row it is about even when the
/// send's answer was never recorded (a crash between the request and its COMMIT).
pub const CALLBACK_PREFIX: &str = "whatsapp_channel:";

/// `request` (a Graph API message body, a JSON object) with the outbox id `message_id` in
/// `biz_opaque_callback_data`. A body that is not an object is returned unchanged: Meta will
/// refuse it for what it is.
pub fn with_callback_data(request: &str, message_id: i64) -> String {
    match serde_json::from_str::<Value>(request) {
        Ok(Value::Object(mut body)) => {
            body.insert("biz_opaque_callback_data".into(), Value::String(format!("{CALLBACK_PREFIX}{message_id}")));
            Value::Object(body).to_string()
        }
        _ => request.to_string(),
    }
}

/// The outbox id in a status's `biz_opaque_callback_data`, if it is one of ours.
pub fn callback_message_id(callback_data: &str) -> Option<i64> {
    let digits = callback_data.strip_prefix(CALLBACK_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The common envelope of a message to `recipient`, with Meta's `<type>` object, and a
/// `context` when it replies to (quotes) another message.
fn message(recipient: &Recipient, kind: &str, object: Value, reply_to: Option<&str>) -> Value {
    let mut body = json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "type": kind });
    match recipient {
        Recipient::Phone(to) => body["to"] = json!(to),
        Recipient::Bsuid(id) => body["recipient"] = json!(id),
        Recipient::Group(id) => {
            body["recipient_type"] = json!("group");
            body["to"] = json!(id);
        }
    }
    body[kind] = object;
    if let Some(wamid) = reply_to {
        body["context"] = json!({ "message_id": wamid });
    }
    body
}

/// What Meta's Groups API sends to a group: text, media and templates (not authentication
/// templates); interactive messages, locations, reactions, read receipts, edits, deletions and
/// calls are not supported in groups.
pub const GROUP_HINT: &str =
    "A group takes text, media (image, video, audio, document, sticker) and templates only: send one of those.";

/// Refuses a kind the Groups API does not send to a group.
fn refuse_for_groups(recipient: &Recipient, what: &str) -> Result<(), InvalidMessage> {
    match recipient {
        Recipient::Group(id) => Err(invalid(
            format!("{what} cannot be sent to group {id}: Meta's Groups API does not support them"),
            GROUP_HINT,
        )),
        _ => Ok(()),
    }
}

/// A message body that breaks one of Meta's rules, caught before it is queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessage {
    pub problem: String,
    pub hint: &'static str,
}

impl std::fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem)
    }
}

impl std::error::Error for InvalidMessage {}

fn invalid(problem: impl Into<String>, hint: &'static str) -> InvalidMessage {
    InvalidMessage { problem: problem.into(), hint }
}

/// Longest text body Meta accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest media caption Meta accepts, in characters.
pub const MAX_CAPTION_CHARS: usize = 1024;

/// The body of a text message, as in Meta's send-messages docs.
pub fn text_message(to: &str, body: &str) -> Value {
    message(&Recipient::Phone(to.to_string()), "text", json!({ "preview_url": false, "body": body }), None)
}

/// A text message with every option: a quoted message and a link preview.
pub fn text(
    recipient: &Recipient,
    body: &str,
    reply_to: Option<&str>,
    preview_url: bool,
) -> Result<Value, InvalidMessage> {
    if body.trim().is_empty() {
        return Err(invalid("message body is empty", "Give the text to send."));
    }
    let chars = body.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(invalid(
            format!("message body has {chars} characters; WhatsApp allows at most {MAX_TEXT_CHARS}"),
            "Split the text into several messages.",
        ));
    }
    Ok(message(recipient, "text", json!({ "preview_url": preview_url, "body": body }), reply_to))
}

/// Media kinds `wa_send_media` sends.
pub const MEDIA_KINDS: &[&str] = &["image", "audio", "video", "document", "sticker"];

/// An image, audio, video, document or sticker, by uploaded media id or by https link.
pub fn media(
    recipient: &Recipient,
    kind: &str,
    link_or_media_id: &str,
    caption: Option<&str>,
    filename: Option<&str>,
) -> Result<Value, InvalidMessage> {
    if !MEDIA_KINDS.contains(&kind) {
        return Err(invalid(format!("unknown media kind {kind:?}"), "Use image, audio, video, document or sticker."));
    }
    let source = link_or_media_id.trim();
    let mut object = if source.starts_with("https://") || source.starts_with("http://") {
        json!({ "link": source })
    } else if !source.is_empty() && source.bytes().all(|b| b.is_ascii_digit()) {
        json!({ "id": source })
    } else {
        return Err(invalid(
            format!("{source:?} is neither a media id nor an http(s) link"),
            "Pass the id wa_upload_media() or Meta returned, or a public https URL of the file.",
        ));
    };
    if let Some(caption) = caption {
        if matches!(kind, "audio" | "sticker") {
            return Err(invalid(format!("{kind} messages cannot have a caption"), "Send the text as its own message."));
        }
        let chars = caption.chars().count();
        if chars > MAX_CAPTION_CHARS {
            return Err(invalid(
                format!("caption has {chars} characters; WhatsApp allows at most {MAX_CAPTION_CHARS}"),
                "Shorten the caption, or send the rest as a text message.",
            ));
        }
        object["caption"] = json!(caption);
    }
    if let Some(filename) = filename {
        if kind != "document" {
            return Err(invalid(
                "only documents have a filename",
                "Drop the filename, or send the file as a document.",
            ));
        }
        object["filename"] = json!(filename);
    }
    Ok(message(recipient, kind, object, None))
}

/// A template message: the only kind allowed outside the 24-hour customer-service window.
pub fn template(
    recipient: &Recipient,
    name: &str,
    language: &str,
    components: Option<&Value>,
) -> Result<Value, InvalidMessage> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(invalid(
            format!("template name {name:?} is not a template name"),
            "Template names are lowercase letters, digits and underscores, e.g. order_update.",
        ));
    }
    let (lang, region) = language.split_once('_').unwrap_or((language, ""));
    let lang_ok = (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase());
    let region_ok = region.is_empty() || (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase()));
    if !lang_ok || !region_ok {
        return Err(invalid(
            format!("language {language:?} is not a language code"),
            "Use the template's language code, e.g. en_US or pt_BR.",
        ));
    }
    let mut object = json!({ "name": name, "language": { "code": language } });
    match components {
        None | Some(Value::Null) => {}
        Some(c @ Value::Array(_)) => object["components"] = c.clone(),
        Some(_) => {
            return Err(invalid(
                "components must be a JSON array",
                "Pass e.g. '[{\"type\":\"body\",\"parameters\":[{\"type\":\"text\",\"text\":\"Ann\"}]}]'.",
            ));
        }
    }
    Ok(message(recipient, "template", object, None))
}

/// The `{{n}}` placeholders of a template's BODY component (from Meta's template list), i.e. how
/// many body parameters a send must give.
pub fn template_body_parameters(components: &Value) -> usize {
    let body = components
        .as_array()
        .and_then(|c| {
            c.iter().find(|c| c.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("BODY")))
        })
        .and_then(|b| b.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find("}}") {
            seen.insert(rest[..end].trim().to_string());
            rest = &rest[end + 2..];
        }
    }
    seen.len()
}

/// What is wrong with a send's body parameters for a template whose BODY uses named
/// placeholders (`{{first_name}}`, `parameter_format: NAMED`): each must be given once, as
/// `{"type": "text", "parameter_name": "first_name", "text": "..."}`. `None` when nothing is
/// wrong, or when the template numbers its placeholders (`{{1}}`), which only counts.
pub fn named_body_parameter_problem(template_components: &Value, given: Option<&Value>) -> Option<String> {
    let body = template_components
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("BODY")))?
        .get("text")?
        .as_str()?;
    let mut expected: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find("}}") else { break };
        let name = rest[..end].trim().to_string();
        rest = &rest[end + 2..];
        if !name.is_empty() && !name.chars().all(|c| c.is_ascii_digit()) && !expected.contains(&name) {
            expected.push(name);
        }
    }
    if expected.is_empty() {
        return None;
    }
    let parameters = given
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("body")))
        .and_then(|b| b.get("parameters"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut seen: Vec<&str> = Vec::new();
    let (mut twice, mut unknown, mut unnamed) = (Vec::new(), Vec::new(), 0);
    for p in parameters {
        match p.get("parameter_name").and_then(Value::as_str) {
            None => unnamed += 1,
            Some(n) if seen.contains(&n) => twice.push(n),
            Some(n) => {
                seen.push(n);
                if !expected.iter().any(|e| e == n) {
                    unknown.push(n);
                }
            }
        }
    }
    let missing: Vec<&str> = expected.iter().map(String::as_str).filter(|e| !seen.contains(e)).collect();
    let mut wrong = Vec::new();
    if !missing.is_empty() {
        wrong.push(format!("missing {}", missing.join(", ")));
    }
    if !unknown.is_empty() {
        wrong.push(format!("not in the template: {}", unknown.join(", ")));
    }
    if !twice.is_empty() {
        wrong.push(format!("given twice: {}", twice.join(", ")));
    }
    if unnamed > 0 {
        wrong.push(format!("{unnamed} without a parameter_name"));
    }
    (!wrong.is_empty())
        .then(|| format!("expects the named body parameters {} ({})", expected.join(", "), wrong.join("; ")))
}

/// A message template as Meta lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: Option<String>,
    pub name: String,
    pub language: String,
    pub status: String,
    pub category: Option<String>,
    pub components: Value,
}

/// The first page of a WhatsApp Business Account's templates.
pub fn templates_url(base_url: &str, version: &str, business_account_id: &str) -> String {
    format!(
        "{}/{}/{}/message_templates?limit=100",
        base_url.trim_end_matches('/'),
        version.trim_matches('/'),
        business_account_id
    )
}

/// One page of `GET /{waba-id}/message_templates`: its templates and the next page's URL.
pub fn parse_templates(http_status: u16, body: &[u8]) -> Result<(Vec<Template>, Option<String>), GraphError> {
    let json: Value = match serde_json::from_slice(body) {
        Ok(j) if (200..300).contains(&http_status) => j,
        _ => {
            let SendOutcome::Failed(e) = parse_send_response(http_status.max(400), body) else { unreachable!() };
            return Err(e);
        }
    };
    let text = |t: &Value, k: &str| {
        t.get(k).and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())))
    };
    let templates = json["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some(Template {
                id: text(t, "id"),
                name: text(t, "name")?,
                language: text(t, "language")?,
                status: text(t, "status").unwrap_or_else(|| "UNKNOWN".into()),
                category: text(t, "category"),
                components: t.get("components").cloned().unwrap_or_else(|| json!([])),
            })
        })
        .collect();
    Ok((templates, json.pointer("/paging/next").and_then(Value::as_str).map(str::to_string)))
}

/// `GET /{version}/{media-id}`: where to download a media file, valid for 5 minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    pub url: String,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    pub file_size: Option<u64>,
}

pub fn media_info_url(base_url: &str, version: &str, media_id: &str, phone_number_id: &str) -> String {
    format!(
        "{}/{}/{media_id}?phone_number_id={phone_number_id}",
        base_url.trim_end_matches('/'),
        version.trim_matches('/')
    )
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
    match parse_send_response(http_status.max(400), body) {
        SendOutcome::Failed(e) => Err(e),
        SendOutcome::Accepted { .. } => unreachable!("an error status is never an acceptance"),
    }
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

pub fn media_upload_url(base_url: &str, version: &str, phone_number_id: &str) -> String {
    format!("{}/{}/{phone_number_id}/media", base_url.trim_end_matches('/'), version.trim_matches('/'))
}

/// What a send lacks for a template's HEADER and BUTTONS, which Meta refuses at send time
/// (error 132000) or delivers broken: a media header (IMAGE, VIDEO, DOCUMENT, LOCATION) needs
/// its media in a `header` component, a TEXT header with a placeholder its text, a URL button
/// with a placeholder (`https://shop.example/{{1}}`) its URL suffix, and a COPY_CODE button its
/// code, each in a `button` component with that button's `index`. `None` when nothing is missing.
pub fn header_and_button_problem(template_components: &Value, given: Option<&Value>) -> Option<String> {
    let template = template_components.as_array()?;
    let given: &[Value] = given.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let kind_of = |c: &Value| c.get("type").and_then(Value::as_str).map(str::to_ascii_lowercase);
    let given_of = |kind: &str| given.iter().find(|c| kind_of(c).as_deref() == Some(kind));
    let mut missing = Vec::new();
    if let Some(header) = template.iter().find(|c| kind_of(c).as_deref() == Some("header")) {
        let format = header.get("format").and_then(Value::as_str).unwrap_or("TEXT").to_ascii_lowercase();
        let parameter_types: Vec<String> = given_of("header")
            .and_then(|h| h.get("parameters"))
            .and_then(Value::as_array)
            .map(|p| {
                p.iter().filter_map(|p| p.get("type").and_then(Value::as_str)).map(str::to_ascii_lowercase).collect()
            })
            .unwrap_or_default();
        match format.as_str() {
            "image" | "video" | "document" | "location" if !parameter_types.contains(&format) => missing.push(format!(
                "its {format} header (components => '[{{\"type\":\"header\",\"parameters\":[{{\"type\":\"{format}\",\"{format}\":{}}}]}}, ...]')",
                if format == "location" { "{\"latitude\":..,\"longitude\":..}" } else { "{\"id\":\"<media id>\"}" }
            )),
            "text"
                if header.get("text").and_then(Value::as_str).is_some_and(|t| t.contains("{{"))
                    && !parameter_types.iter().any(|t| t == "text") =>
            {
                missing.push("its header text (a header component with one text parameter)".to_string())
            }
            _ => {}
        }
    }
    let buttons = template
        .iter()
        .find(|c| kind_of(c).as_deref() == Some("buttons"))
        .and_then(|b| b.get("buttons"))
        .and_then(Value::as_array);
    for (index, button) in buttons.into_iter().flatten().enumerate() {
        let kind = button.get("type").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
        let needs = match kind.as_str() {
            "url" if button.get("url").and_then(Value::as_str).is_some_and(|u| u.contains("{{")) => "url",
            "copy_code" => "copy_code",
            _ => continue,
        };
        let given_here = given.iter().any(|c| {
            kind_of(c).as_deref() == Some("button")
                && c.get("sub_type").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case(needs))
                && match c.get("index") {
                    Some(Value::String(i)) => i.trim() == index.to_string(),
                    Some(Value::Number(i)) => i.as_u64() == Some(index as u64),
                    _ => false,
                }
        });
        if !given_here {
            let what = if needs == "url" { "URL suffix" } else { "coupon code" };
            let parameter = if needs == "url" {
                "\"type\":\"text\",\"text\":\"...\""
            } else {
                "\"type\":\"coupon_code\",\"coupon_code\":\"...\""
            };
            missing.push(format!(
                "the {what} of button {index} (components => '[..., {{\"type\":\"button\",\"sub_type\":\"{needs}\",\"index\":\"{index}\",\"parameters\":[{{{parameter}}}]}}]')"
            ));
        }
    }
    (!missing.is_empty()).then(|| format!("needs {}", missing.join("; and ")))
}

/// How many body parameters a send's `components` give.
pub fn given_body_parameters(components: Option<&Value>) -> usize {
    components
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("body")))
        .and_then(|b| b.get("parameters"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// Buttons, lists and the other interactive messages: Meta's `interactive` object as given.
pub fn interactive(recipient: &Recipient, object: &Value) -> Result<Value, InvalidMessage> {
    const HINT: &str = "Pass Meta's interactive object, e.g. '{\"type\":\"button\",\"body\":{\"text\":\"Pick one\"},\"action\":{\"buttons\":[{\"type\":\"reply\",\"reply\":{\"id\":\"yes\",\"title\":\"Yes\"}}]}}'.";
    refuse_for_groups(recipient, "interactive messages")?;
    let kind = object.get("type").and_then(Value::as_str);
    if kind.is_none() || object.pointer("/action").is_none() {
        return Err(invalid("interactive must be an object with \"type\" and \"action\"", HINT));
    }
    if kind == Some("button") {
        let n = object.pointer("/action/buttons").and_then(Value::as_array).map_or(0, Vec::len);
        if !(1..=3).contains(&n) {
            return Err(invalid(format!("a button message has 1 to 3 buttons, not {n}"), HINT));
        }
    }
    Ok(message(recipient, "interactive", object.clone(), None))
}

/// A location pin.
pub fn location(
    recipient: &Recipient,
    latitude: f64,
    longitude: f64,
    name: Option<&str>,
    address: Option<&str>,
) -> Result<Value, InvalidMessage> {
    refuse_for_groups(recipient, "locations")?;
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return Err(invalid(
            format!("({latitude}, {longitude}) is not a place on Earth"),
            "Latitude is -90..90, longitude -180..180.",
        ));
    }
    let mut object = json!({ "latitude": latitude, "longitude": longitude });
    if let Some(n) = name {
        object["name"] = json!(n);
    }
    if let Some(a) = address {
        object["address"] = json!(a);
    }
    Ok(message(recipient, "location", object, None))
}

/// A reaction to a message; an empty emoji removes the reaction.
pub fn reaction(recipient: &Recipient, message_wamid: &str, emoji: &str) -> Value {
    message(recipient, "reaction", json!({ "message_id": message_wamid, "emoji": emoji }), None)
}

/// Marks a received message (and the ones before it) as read, optionally showing a typing
/// indicator until the reply is sent (at most 25 s).
pub fn mark_read(message_wamid: &str, typing: bool) -> Value {
    let mut body = json!({ "messaging_product": "whatsapp", "status": "read", "message_id": message_wamid });
    if typing {
        body["typing_indicator"] = json!({ "type": "text" });
    }
    body
}

/// What the Graph API answered to a send.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// 200 with `messages[0].id`: accepted (not yet delivered; statuses come by webhook).
    /// `None` for a read receipt, which Meta answers with `{"success": true}`.
    Accepted { wamid: Option<String> },
    /// An error object, or an answer we could not read.
    Failed(GraphError),
}

/// A Graph API error, from `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    /// `error.code`, or `None` when the answer had no error object (proxy page, 5xx HTML).
    pub code: Option<i64>,
    pub http_status: u16,
    /// `error.message` (Meta says to rely on codes and details, not on titles).
    pub message: String,
    /// `error.error_data.details`.
    pub details: Option<String>,
}

/// Reads an answer of the messages endpoint.
pub fn parse_send_response(http_status: u16, body: &[u8]) -> SendOutcome {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&http_status) {
        if let Some(wamid) = json.as_ref().and_then(|j| j.pointer("/messages/0/id")).and_then(Value::as_str) {
            return SendOutcome::Accepted { wamid: Some(wamid.to_string()) };
        }
        if json.as_ref().and_then(|j| j.get("success")) == Some(&Value::Bool(true)) {
            return SendOutcome::Accepted { wamid: None };
        }
    }
    let error = json.as_ref().and_then(|j| j.get("error"));
    let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    SendOutcome::Failed(GraphError {
        code: error.and_then(|e| e.get("code")).and_then(Value::as_i64),
        http_status,
        message: error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {http_status} without a Graph API error object: {snippet}")),
        details: error.and_then(|e| e.pointer("/error_data/details")).and_then(Value::as_str).map(str::to_string),
    })
}

/// What the delivery worker does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again later with exponential backoff and jitter.
    Backoff,
    /// Pair rate limit (131056): Meta says retry after 4^n seconds.
    PairLimit,
    /// Worth [`FEW_ATTEMPTS`] attempts at most (a media upload Meta failed to fetch may work
    /// the next time; a file that really is wrong never will).
    Few,
    /// The access token is expired or invalid: retrying burns attempts until it is replaced.
    Credentials,
    /// Retrying cannot help; the message fails with the error and a hint.
    Never,
}

/// Meta's throttles: slow down and try again later (the set courier, the most-used gateway,
/// learned: 4, 80007, 130429, 131048 spam rate limit, 133016 register attempts; and the Groups
/// API's 131208, too many group operations from this number in a short time).
pub const THROTTLES: &[i64] = &[4, 80007, 130429, 131048, 133016, 131208];
/// Transient failures on Meta's side: retry with backoff.
pub const TRANSIENT: &[i64] = &[1, 2, 131000, 131016, 131057];
/// Pair rate limit: one message per 6 s to one customer, past a burst.
pub const PAIR_LIMIT: &[i64] = &[131056];
/// Media upload error (often a MIME mismatch or a host that refused Meta): a few attempts.
pub const RETRIED_A_FEW_TIMES: &[i64] = &[131053];
/// The access token is invalid or expired.
pub const CREDENTIALS: &[i64] = &[0, 190];
/// Attempts at a [`Retry::Few`] error before the message fails.
pub const FEW_ATTEMPTS: u32 = 3;

/// Classifies an error by Meta's `error.code` (not the HTTP status, which Meta uses
/// inconsistently for throttling); without a code, 5xx and 429 are transient. Everything else
/// is final: 131026 (undeliverable), 131049 (per-customer marketing limit: not before 24 h),
/// 131047 (window closed), 132xxx (templates), ...
pub fn classify(error: &GraphError) -> Retry {
    let Some(code) = error.code else {
        return if error.http_status >= 500 || error.http_status == 429 { Retry::Backoff } else { Retry::Never };
    };
    if THROTTLES.contains(&code) || TRANSIENT.contains(&code) {
        Retry::Backoff
    } else if PAIR_LIMIT.contains(&code) {
        Retry::PairLimit
    } else if RETRIED_A_FEW_TIMES.contains(&code) {
        Retry::Few
    } else if CREDENTIALS.contains(&code) {
        Retry::Credentials
    } else {
        Retry::Never
    }
}

/// Whether a failed send says the Graph API is out of reach rather than that it refused the
/// message: no answer at all (`http_status` 0: a timeout, a refused or dropped connection) or a
/// 5xx. Such a failure never fails a message by count: the channel waits and probes instead.
pub fn is_outage(error: &GraphError) -> bool {
    error.http_status == 0 || error.http_status >= 500
}

/// One line, in the seed's words, on what to do about an error code.
pub fn hint(code: Option<i64>) -> Option<&'static str> {
    Some(match code? {
        131030 => {
            "recipient not in allowed list: the app is in development mode; add the number as a test recipient in WhatsApp -> API Setup, or complete Business Verification to go live"
        }
        131047 => {
            "more than 24 hours since the customer last wrote: only a template can reopen the conversation (use wa_send_template)"
        }
        0 | 190 => {
            "the access token has expired or is invalid: generate a permanent token for a System User and update the channel"
        }
        133010 => {
            "the business phone number is not registered with the Cloud API: register it in WhatsApp -> API Setup"
        }
        100 => "invalid parameter: the request was refused as malformed; check the recipient and the message fields",
        131026 => "message undeliverable: the recipient is not on WhatsApp or uses an old client",
        131021 => "the recipient is the business number itself",
        131031 => "the WhatsApp Business Account is locked: see Business Support",
        131056 => "too many messages to this customer in a short time (one per 6 seconds): it is retried",
        130429 | 80007 | 4 => "rate limit reached: it is retried",
        131053 => {
            "media upload error: the file does not match its MIME type, is too large, or its host refused Meta; tried a few times"
        }
        131049 => {
            "Meta limits how many marketing messages a customer gets: do not send this customer another marketing template for 24 hours"
        }
        131048 => {
            "spam rate limit: too many of this number's messages were blocked or reported; sending slows down and retries"
        }
        133016 => "too many register or deregister attempts for this number: wait before trying again",
        132000 | 132001 => {
            "the template does not exist in this language, is not approved, or got the wrong number of parameters"
        }
        368 => "the account is temporarily blocked for policy violations",
        // The Groups API's own codes (Meta's "Groups API Error Codes and Troubleshooting").
        131020 => "the group has only one member: Meta refuses messages to single-member groups",
        131041 => "group unknown: it does not exist or this business number is no longer a member",
        131059 => "the group list's paging cursor expired: start listing from the beginning again",
        131201 => "only some participants of the group operation succeeded: see error_data for which",
        131202 => "the same participant is listed twice in the request",
        131204 => "too many participants: a group has at most 8",
        131207 => "the group is suspended for violating WhatsApp's policies",
        131208 => "too many group operations from this number in a short time: it is retried",
        131209 => "a group's profile picture must be square",
        131210 => "a group's profile picture must be larger than 192 x 192 pixels",
        131211 => "this number has created as many groups as Meta allows (10,000)",
        131212 => "the participant is not a member of the group",
        _ => return None,
    })
}

/// A spread in [0, 1) for [`backoff`] that differs per message (or media job) and attempt,
/// without a random number source: the same `id` and `attempt` always give the same value.
pub fn jitter(id: i64, attempt: u32) -> f64 {
    let x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// How long to wait before attempt `attempt + 1`, after `attempt` failed attempts (1-based).
/// `jitter` in `[0, 1)` spreads retries so that a recovering API is not hit in lockstep.
pub fn backoff(retry: Retry, attempt: u32, jitter: f64) -> Duration {
    let n = attempt.saturating_sub(1).min(16);
    let secs = match retry {
        Retry::PairLimit => 4f64.powi(n as i32).min(MAX_BACKOFF_SECS),
        _ => (2f64.powi(n as i32) * (1.0 + jitter)).min(MAX_BACKOFF_SECS),
    };
    Duration::from_secs_f64(secs)
}

const MAX_BACKOFF_SECS: f64 = 300.0;

/// Attempts after which a transient error is given up on (about 90 minutes of retrying).
pub const MAX_ATTEMPTS: u32 = 25;

#[cfg(test)]
mod tests {

    #[test]
    fn jitter_is_in_range_and_differs_per_message_and_attempt() {
        let values: Vec<f64> = (0..50).flat_map(|id| (1..5).map(move |a| jitter(id, a))).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert_ne!(jitter(1, 1), jitter(2, 1));
        assert_ne!(jitter(1, 1), jitter(1, 2));
        assert_eq!(jitter(7, 3), jitter(7, 3));
    }
    use super::*;

    #[test]
    fn no_answer_and_5xx_are_outages_and_meta_refusals_are_not() {
        let e = |http_status, code| GraphError { code, http_status, message: String::new(), details: None };
        assert!(is_outage(&e(0, None)));
        assert!(is_outage(&e(503, Some(2))));
        assert!(is_outage(&e(500, None)));
        assert!(!is_outage(&e(400, Some(130429))), "a throttle is Meta answering");
        assert!(!is_outage(&e(401, Some(190))));
        assert!(!is_outage(&e(400, Some(131026))));
    }

    #[test]
    fn the_outbox_id_travels_in_the_callback_data_and_back() {
        let body = r#"{"messaging_product":"whatsapp","to":"+16505551234","type":"text","text":{"body":"hi"}}"#;
        let sent: Value = serde_json::from_str(&with_callback_data(body, 42)).unwrap();
        assert_eq!(sent["biz_opaque_callback_data"], "whatsapp_channel:42");
        assert_eq!(sent["text"]["body"], "hi");
        assert_eq!(callback_message_id("whatsapp_channel:42"), Some(42));
        for other in [
            "whatsapp_channel:",
            "whatsapp_channel:4x",
            "order-42",
            "whatsapp_channel:-1",
            "whatsapp_channel:99999999999999999999",
        ] {
            assert_eq!(callback_message_id(other), None, "{other}");
        }
        assert_eq!(with_callback_data("[1]", 1), "[1]");
    }

    #[test]
    fn builds_metas_text_body_and_url() {
        assert_eq!(
            messages_url("http://127.0.0.1:9/", "v25.0", "106540352242922"),
            "http://127.0.0.1:9/v25.0/106540352242922/messages"
        );
        assert_eq!(
            text_message("+15551234567", "hi").to_string(),
            r#"{"messaging_product":"whatsapp","recipient_type":"individual","text":{"body":"hi","preview_url":false},"to":"+15551234567","type":"text"}"#
        );
    }

    #[test]
    fn reads_accepted_and_failed_answers() {
        let ok = br#"{"messaging_product":"whatsapp","contacts":[{"input":"+1","wa_id":"1"}],"messages":[{"id":"wamid.X"}]}"#;
        assert_eq!(parse_send_response(200, ok), SendOutcome::Accepted { wamid: Some("wamid.X".into()) });
        assert_eq!(parse_send_response(200, br#"{"success":true}"#), SendOutcome::Accepted { wamid: None });
        // The real 131030 answer quoted in Neurotech-HQ/heyoo#40.
        let dev = br#"{"error":{"message":"(#131030) Recipient phone number not in allowed list","type":"OAuthException","code":131030,"error_data":{"messaging_product":"whatsapp","details":"Recipient's phone number is not whitelisted"},"error_subcode":2655007,"fbtrace_id":"A"}}"#;
        let SendOutcome::Failed(e) = parse_send_response(400, dev) else { panic!() };
        assert_eq!(e.code, Some(131030));
        assert_eq!(e.details.as_deref(), Some("Recipient's phone number is not whitelisted"));
        assert_eq!(classify(&e), Retry::Never);
        assert!(hint(e.code).unwrap().contains("development mode"));
        let SendOutcome::Failed(e) = parse_send_response(502, b"<html>Bad gateway</html>") else { panic!() };
        assert_eq!((e.code, classify(&e)), (None, Retry::Backoff));
        assert!(e.message.contains("HTTP 502"));
        // A 200 without a wamid is not an acceptance.
        assert!(matches!(parse_send_response(200, b"{}"), SendOutcome::Failed(_)));
    }

    #[test]
    fn sends_to_a_group_what_the_groups_api_takes_and_refuses_the_rest() {
        let group = Recipient::Group("Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD".into());
        let t = text(&group, "hello all", None, false).unwrap();
        assert_eq!((t["recipient_type"].as_str(), t["to"].as_str()), (Some("group"), Some(group.as_str())));
        assert!(t.get("recipient").is_none());
        assert_eq!(media(&group, "image", "1003383421387256", Some("look"), None).unwrap()["recipient_type"], "group");
        assert_eq!(template(&group, "launch", "en_US", None).unwrap()["recipient_type"], "group");
        let buttons = json!({"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}});
        let refused = interactive(&group, &buttons).unwrap_err();
        assert!(refused.problem.contains("interactive messages cannot be sent to group"), "{}", refused.problem);
        assert_eq!(refused.hint, GROUP_HINT);
        assert!(location(&group, 1.0, 2.0, None, None).unwrap_err().problem.contains("locations"));
    }

    #[test]
    fn builds_every_kind_as_meta_documents_it() {
        let to = Recipient::Phone("+15551234567".into());
        let bsuid = Recipient::Bsuid("US.13491208655302741918".into());
        let t = text(&bsuid, "hi", Some("wamid.Q"), true).unwrap();
        assert_eq!(t["recipient"], "US.13491208655302741918");
        assert!(t.get("to").is_none());
        assert_eq!(
            (t["context"]["message_id"].as_str(), t["text"]["preview_url"].as_bool()),
            (Some("wamid.Q"), Some(true))
        );
        assert!(text(&to, &"a".repeat(4097), None, false).unwrap_err().problem.contains("at most 4096"));
        assert!(text(&to, " ", None, false).is_err());

        let m = media(&to, "document", "https://example.com/a.pdf", Some("Invoice"), Some("a.pdf")).unwrap();
        assert_eq!(
            m["document"],
            json!({"link": "https://example.com/a.pdf", "caption": "Invoice", "filename": "a.pdf"})
        );
        assert_eq!(
            media(&to, "image", "1003383421387256", None, None).unwrap()["image"],
            json!({"id": "1003383421387256"})
        );
        assert!(media(&to, "image", "x", Some(&"c".repeat(1025)), None).is_err());
        assert!(
            media(&to, "image", "123", Some(&"c".repeat(1025)), None).unwrap_err().problem.contains("at most 1024")
        );
        assert!(media(&to, "sticker", "123", Some("no"), None).is_err());
        assert!(media(&to, "gif", "123", None, None).is_err());

        let components = json!([{"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}]);
        let tpl = template(&to, "order_update", "en_US", Some(&components)).unwrap();
        assert_eq!(
            tpl["template"],
            json!({"name": "order_update", "language": {"code": "en_US"}, "components": components})
        );
        assert!(template(&to, "Order Update", "en_US", None).is_err());
        assert!(template(&to, "x", "english", None).is_err());

        let buttons = json!({"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}});
        assert_eq!(interactive(&to, &buttons).unwrap()["interactive"], buttons);
        assert!(interactive(&to, &json!({"type": "button", "action": {"buttons": []}})).is_err());
        assert!(interactive(&to, &json!("text")).is_err());

        assert_eq!(
            location(&to, 37.48, -122.14, Some("HQ"), None).unwrap()["location"],
            json!({"latitude": 37.48, "longitude": -122.14, "name": "HQ"})
        );
        assert!(location(&to, 91.0, 0.0, None, None).is_err());
        assert_eq!(reaction(&to, "wamid.R", "")["reaction"], json!({"message_id": "wamid.R", "emoji": ""}));
        assert_eq!(
            mark_read("wamid.M", true),
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.M", "typing_indicator": {"type": "text"}})
        );
    }

    #[test]
    fn reads_template_lists_and_their_errors() {
        let page = br#"{"data":[{"name":"order_update","language":"en_US","status":"APPROVED","category":"UTILITY","id":"594425479261596",
            "components":[{"type":"BODY","text":"Hi {{1}}"}]},{"status":"APPROVED"}],"paging":{"next":"https://graph/next"}}"#;
        let (list, next) = parse_templates(200, page).unwrap();
        assert_eq!(list.len(), 1, "an entry without a name is skipped");
        assert_eq!((list[0].name.as_str(), list[0].status.as_str()), ("order_update", "APPROVED"));
        assert_eq!(next.as_deref(), Some("https://graph/next"));
        let err =
            parse_templates(400, br#"{"error":{"message":"(#100) Tried accessing nonexisting field","code":100}}"#)
                .unwrap_err();
        assert_eq!(err.code, Some(100));
    }

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

    #[test]
    fn counts_template_body_parameters() {
        let template = json!([{"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
                              {"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships {{3}}. Thanks, {{1}}!"}]);
        assert_eq!(template_body_parameters(&template), 3);
        assert_eq!(template_body_parameters(&json!([{"type": "BODY", "text": "Hello world"}])), 0);
        let given =
            json!([{"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "42"}]}]);
        assert_eq!(given_body_parameters(Some(&given)), 2);
        assert_eq!(given_body_parameters(None), 0);
    }

    #[test]
    fn classifies_by_code_not_http_status() {
        let err =
            |code, http_status| GraphError { code: Some(code), http_status, message: String::new(), details: None };
        assert_eq!(classify(&err(130429, 400)), Retry::Backoff);
        assert_eq!(classify(&err(131056, 400)), Retry::PairLimit);
        assert_eq!(classify(&err(190, 401)), Retry::Credentials);
        assert_eq!(classify(&err(100, 500)), Retry::Never);
        // The throttles and retry classes of the best gateways (courier's sets).
        for code in [4, 80007, 130429, 131048, 133016] {
            assert_eq!(classify(&err(code, 400)), Retry::Backoff, "{code}");
        }
        assert_eq!(classify(&err(131053, 400)), Retry::Few);
        // Named template parameters (parameter_format NAMED).
        let template =
            serde_json::json!([{ "type": "BODY", "text": "Hi {{first_name}}, order {{order_id}} ({{first_name}})" }]);
        let body = |params: serde_json::Value| serde_json::json!([{ "type": "body", "parameters": params }]);
        let named = |n: &str| serde_json::json!({ "type": "text", "parameter_name": n, "text": "x" });
        let ok = body(serde_json::json!([named("order_id"), named("first_name")]));
        assert_eq!(named_body_parameter_problem(&template, Some(&ok)), None);
        let bad = body(
            serde_json::json!([named("first_name"), named("first_name"), named("coupon"), { "type": "text", "text": "y" }]),
        );
        assert_eq!(
            named_body_parameter_problem(&template, Some(&bad)).as_deref(),
            Some(
                "expects the named body parameters first_name, order_id (missing order_id; not in the template: coupon; given twice: first_name; 1 without a parameter_name)"
            )
        );
        assert!(named_body_parameter_problem(&template, None).unwrap().contains("missing first_name, order_id"));
        let numbered = serde_json::json!([{ "type": "BODY", "text": "Hi {{1}}" }]);
        assert_eq!(named_body_parameter_problem(&numbered, None), None, "numbered templates only count");
        assert_eq!(classify(&err(131049, 400)), Retry::Never);
        assert_eq!(classify(&err(131026, 400)), Retry::Never);
        assert!(hint(Some(131049)).is_some_and(|h| h.contains("24 hours")));
        assert!(hint(Some(131048)).is_some());
    }

    #[test]
    fn media_headers_url_and_copy_code_buttons_must_be_given() {
        let template = json!([
            { "type": "HEADER", "format": "IMAGE" },
            { "type": "BODY", "text": "Your order shipped" },
            { "type": "BUTTONS", "buttons": [
                { "type": "QUICK_REPLY", "text": "Thanks" },
                { "type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}" },
                { "type": "URL", "text": "Shop", "url": "https://shop.example/" },
                { "type": "COPY_CODE", "example": "SAVE10" } ] }
        ]);
        let problem = header_and_button_problem(&template, None).unwrap();
        assert!(problem.contains("its image header"), "{problem}");
        assert!(problem.contains("URL suffix of button 1"), "{problem}");
        assert!(problem.contains("coupon code of button 3"), "{problem}");
        assert!(!problem.contains("button 2") && !problem.contains("button 0"), "{problem}");
        let given = json!([
            { "type": "header", "parameters": [{ "type": "image", "image": { "id": "m1" } }] },
            { "type": "button", "sub_type": "url", "index": "1", "parameters": [{ "type": "text", "text": "A-42" }] },
            { "type": "button", "sub_type": "COPY_CODE", "index": 3, "parameters": [{ "type": "coupon_code", "coupon_code": "SAVE10" }] }
        ]);
        assert_eq!(header_and_button_problem(&template, Some(&given)), None);
        let text_header = json!([{ "type": "HEADER", "format": "TEXT", "text": "Order {{1}}" }]);
        assert!(header_and_button_problem(&text_header, None).unwrap().contains("header text"));
        let plain = json!([{ "type": "HEADER", "format": "TEXT", "text": "Hello" }, { "type": "BODY", "text": "Hi" }]);
        assert_eq!(header_and_button_problem(&plain, None), None);
    }

    #[test]
    fn group_errors_have_hints_and_the_group_rate_limit_is_a_throttle() {
        let err =
            |code, http_status| GraphError { code: Some(code), http_status, message: String::new(), details: None };
        for code in [131020, 131041, 131059, 131201, 131202, 131204, 131207, 131208, 131209, 131210, 131211, 131212] {
            assert!(hint(Some(code)).is_some(), "no hint for {code}");
        }
        assert_eq!(classify(&err(131208, 429)), Retry::Backoff);
        assert_eq!(classify(&err(131041, 400)), Retry::Never);
        assert_eq!(classify(&err(131020, 400)), Retry::Never);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(Retry::Backoff, 1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(Retry::Backoff, 4, 0.5), Duration::from_secs(12));
        assert_eq!(backoff(Retry::PairLimit, 3, 0.9), Duration::from_secs(16));
        assert_eq!(backoff(Retry::Backoff, 40, 0.0), Duration::from_secs(300));
    }
}
