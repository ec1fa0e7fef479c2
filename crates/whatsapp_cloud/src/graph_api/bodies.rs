//! Request bodies of the messages endpoint, one builder per kind of message, each checking
//! Meta's rules before the message is queued.

use crate::phone::Recipient;
use serde_json::{Value, json};

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
    reply_to: Option<&str>,
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
    Ok(message(recipient, kind, object, reply_to))
}

/// A template message: the only kind allowed outside the 24-hour customer-service window.
pub fn template(
    recipient: &Recipient,
    name: &str,
    language: &str,
    components: Option<&Value>,
    reply_to: Option<&str>,
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
    Ok(message(recipient, "template", object, reply_to))
}

/// Buttons, lists and the other interactive messages: Meta's `interactive` object as given.
pub fn interactive(recipient: &Recipient, object: &Value, reply_to: Option<&str>) -> Result<Value, InvalidMessage> {
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
    Ok(message(recipient, "interactive", object.clone(), reply_to))
}

/// A location pin.
pub fn location(
    recipient: &Recipient,
    latitude: f64,
    longitude: f64,
    name: Option<&str>,
    address: Option<&str>,
    reply_to: Option<&str>,
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
    Ok(message(recipient, "location", object, reply_to))
}

/// Most contact cards one message may carry (Meta's contacts-messages docs).
pub const MAX_CONTACTS: usize = 257;

/// The name fields of a contact card besides `formatted_name`: Meta requires at least one.
const NAME_PARTS: &[&str] = &["first_name", "last_name", "middle_name", "suffix", "prefix"];

/// The list fields of a contact card, each an array of objects when given.
const CONTACT_LISTS: &[&str] = &["addresses", "emails", "phones", "urls"];

/// A contacts message: contact cards (Meta's contact objects, as given) the customer can save.
/// Checked as Meta checks them: a list of 1 to 257 objects, each with a `name` that has a
/// non-empty `formatted_name` and at least one other part (first, last or middle name, prefix,
/// suffix); `addresses`, `emails`, `phones` and `urls` are lists of objects and `org` an object
/// when given. Groups do not take contacts messages.
pub fn contacts(recipient: &Recipient, cards: &Value, reply_to: Option<&str>) -> Result<Value, InvalidMessage> {
    const HINT: &str = "Pass a JSON array of Meta's contact objects, e.g. '[{\"name\":{\"formatted_name\":\"Ann Lee\",\"first_name\":\"Ann\",\"last_name\":\"Lee\"},\"phones\":[{\"phone\":\"+15551234567\",\"type\":\"WORK\"}]}]'.";
    refuse_for_groups(recipient, "contacts messages")?;
    let Some(list) = cards.as_array() else {
        return Err(invalid("contacts must be a JSON array of contact objects", HINT));
    };
    if list.is_empty() || list.len() > MAX_CONTACTS {
        return Err(invalid(format!("a contacts message has 1 to {MAX_CONTACTS} contacts, not {}", list.len()), HINT));
    }
    for (i, card) in list.iter().enumerate() {
        let n = i + 1;
        if !card.is_object() {
            return Err(invalid(format!("contact {n} is not an object"), HINT));
        }
        let Some(name) = card.get("name").filter(|v| v.is_object()) else {
            return Err(invalid(format!("contact {n} has no \"name\" object"), HINT));
        };
        let given = |field: &str| name.get(field).and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty());
        if !given("formatted_name") {
            return Err(invalid(format!("contact {n} has no name.formatted_name"), HINT));
        }
        if !NAME_PARTS.iter().any(|p| given(p)) {
            return Err(invalid(
                format!(
                    "contact {n}'s name has only formatted_name: Meta requires at least one of {}",
                    NAME_PARTS.join(", ")
                ),
                HINT,
            ));
        }
        for field in CONTACT_LISTS {
            if let Some(v) = card.get(*field)
                && !v.as_array().is_some_and(|items| items.iter().all(Value::is_object))
            {
                return Err(invalid(format!("contact {n}'s {field} must be a list of objects"), HINT));
            }
        }
        if card.get("org").is_some_and(|v| !v.is_object()) {
            return Err(invalid(format!("contact {n}'s org must be an object"), HINT));
        }
    }
    Ok(message(recipient, "contacts", cards.clone(), reply_to))
}

/// A reaction to a message; an empty emoji removes the reaction.
/// (No `reply_to`: Meta does not take a context on a reaction, which already names its message.)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph_api::messages_url;

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
    fn sends_to_a_group_what_the_groups_api_takes_and_refuses_the_rest() {
        let group = Recipient::Group("Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD".into());
        let t = text(&group, "hello all", None, false).unwrap();
        assert_eq!((t["recipient_type"].as_str(), t["to"].as_str()), (Some("group"), Some(group.as_str())));
        assert!(t.get("recipient").is_none());
        assert_eq!(
            media(&group, "image", "1003383421387256", Some("look"), None, None).unwrap()["recipient_type"],
            "group"
        );
        assert_eq!(template(&group, "launch", "en_US", None, None).unwrap()["recipient_type"], "group");
        let buttons = json!({"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}});
        let refused = interactive(&group, &buttons, None).unwrap_err();
        assert!(refused.problem.contains("interactive messages cannot be sent to group"), "{}", refused.problem);
        assert_eq!(refused.hint, GROUP_HINT);
        assert!(location(&group, 1.0, 2.0, None, None, None).unwrap_err().problem.contains("locations"));
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

        let m = media(&to, "document", "https://example.com/a.pdf", Some("Invoice"), Some("a.pdf"), None).unwrap();
        assert_eq!(
            m["document"],
            json!({"link": "https://example.com/a.pdf", "caption": "Invoice", "filename": "a.pdf"})
        );
        assert_eq!(
            media(&to, "image", "1003383421387256", None, None, None).unwrap()["image"],
            json!({"id": "1003383421387256"})
        );
        assert!(media(&to, "image", "x", Some(&"c".repeat(1025)), None, None).is_err());
        assert!(
            media(&to, "image", "123", Some(&"c".repeat(1025)), None, None)
                .unwrap_err()
                .problem
                .contains("at most 1024")
        );
        assert!(media(&to, "sticker", "123", Some("no"), None, None).is_err());
        assert!(media(&to, "gif", "123", None, None, None).is_err());

        let components = json!([{"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}]);
        let tpl = template(&to, "order_update", "en_US", Some(&components), None).unwrap();
        assert_eq!(
            tpl["template"],
            json!({"name": "order_update", "language": {"code": "en_US"}, "components": components})
        );
        assert!(template(&to, "Order Update", "en_US", None, None).is_err());
        assert!(template(&to, "x", "english", None, None).is_err());

        let buttons = json!({"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}});
        assert_eq!(interactive(&to, &buttons, None).unwrap()["interactive"], buttons);
        assert!(interactive(&to, &json!({"type": "button", "action": {"buttons": []}}), None).is_err());
        assert!(interactive(&to, &json!("text"), None).is_err());

        assert_eq!(
            location(&to, 37.48, -122.14, Some("HQ"), None, None).unwrap()["location"],
            json!({"latitude": 37.48, "longitude": -122.14, "name": "HQ"})
        );
        assert!(location(&to, 91.0, 0.0, None, None, None).is_err());
        assert_eq!(reaction(&to, "wamid.R", "")["reaction"], json!({"message_id": "wamid.R", "emoji": ""}));
        assert_eq!(
            mark_read("wamid.M", true),
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.M", "typing_indicator": {"type": "text"}})
        );
    }

    #[test]
    fn quotes_a_message_on_every_kind_meta_allows() {
        let to = Recipient::Phone("+15551234567".into());
        let q = Some("wamid.Q");
        let buttons = json!({"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}});
        let card = json!([{"name": {"formatted_name": "Ann Lee", "first_name": "Ann"}}]);
        for body in [
            text(&to, "hi", q, false).unwrap(),
            media(&to, "sticker", "123", None, None, q).unwrap(),
            media(&to, "document", "https://example.com/a.pdf", Some("c"), Some("a.pdf"), q).unwrap(),
            template(&to, "order_update", "en_US", None, q).unwrap(),
            interactive(&to, &buttons, q).unwrap(),
            location(&to, 1.0, 2.0, None, None, q).unwrap(),
            contacts(&to, &card, q).unwrap(),
        ] {
            assert_eq!(body["context"], json!({"message_id": "wamid.Q"}), "{body}");
        }
        assert!(media(&to, "image", "123", None, None, None).unwrap().get("context").is_none());
        assert!(reaction(&to, "wamid.R", "👍").get("context").is_none());
    }

    #[test]
    fn builds_a_contacts_message_and_refuses_what_meta_refuses() {
        let to = Recipient::Phone("+15551234567".into());
        let cards = json!([{
            "name": {"formatted_name": "Ann Lee", "first_name": "Ann", "last_name": "Lee"},
            "phones": [{"phone": "+15557654321", "type": "WORK", "wa_id": "15557654321"}],
            "emails": [{"email": "ann@example.com", "type": "WORK"}],
            "org": {"company": "Acme"}
        }]);
        let body = contacts(&to, &cards, None).unwrap();
        assert_eq!(
            body,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+15551234567", "type": "contacts", "contacts": cards})
        );
        let problem = |cards: Value| contacts(&to, &cards, None).unwrap_err().problem;
        assert!(problem(json!({"name": {"formatted_name": "A", "first_name": "A"}})).contains("JSON array"));
        assert!(problem(json!([])).contains("1 to 257 contacts, not 0"));
        let many: Vec<Value> = (0..258).map(|_| json!({"name": {"formatted_name": "A", "first_name": "A"}})).collect();
        assert!(problem(Value::Array(many)).contains("not 258"));
        assert!(problem(json!(["Ann"])).contains("contact 1 is not an object"));
        assert!(problem(json!([{"phones": [{"phone": "+1555"}]}])).contains("contact 1 has no \"name\" object"));
        assert!(problem(json!([{"name": {"first_name": "Ann"}}])).contains("no name.formatted_name"));
        assert!(
            problem(json!([{"name": {"formatted_name": " ", "first_name": "Ann"}}])).contains("no name.formatted_name")
        );
        let only_formatted =
            problem(json!([{"name": {"formatted_name": "A", "first_name": "A"}}, {"name": {"formatted_name": "Bo"}}]));
        assert!(only_formatted.contains("contact 2's name has only formatted_name"), "{only_formatted}");
        assert!(
            problem(json!([{"name": {"formatted_name": "A", "last_name": "A"}, "phones": "+1555"}]))
                .contains("phones must be a list of objects")
        );
        assert!(
            problem(json!([{"name": {"formatted_name": "A", "last_name": "A"}, "org": "Acme"}]))
                .contains("org must be an object")
        );
        let group = Recipient::Group("Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD".into());
        assert_eq!(contacts(&group, &cards, None).unwrap_err().hint, GROUP_HINT);
    }
}
