//! The Graph API bodies of the send functions (sql/outbound.sql's `wa_send_*()`), one per kind,
//! built by the pure functions of `whatsapp_cloud::graph_api` (unit-tested there); and the
//! recipient and error helpers of the SQL API.

use crate::pg::error::{raise, required};
use crate::required;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use whatsapp_cloud::{graph_api, phone};

/// Normalises a phone number to `+E.164` (`+1 555-123-4567` -> `+15551234567`), or raises an
/// error that says why it cannot be one.
#[pg_extern(immutable, strict, parallel_safe)]
fn wa_normalize_phone(phone: &str) -> String {
    phone::normalize(phone)
        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), phone::HINT))
}

/// What to do about a Graph API error code, in one line (NULL when there is nothing to say).
#[pg_extern(immutable, parallel_safe)]
fn wa_error_hint(code: Option<i32>) -> Option<&'static str> {
    graph_api::hint(code.map(i64::from))
}

/// Normalises a recipient: a phone number to `+E.164`, a business-scoped user id (BSUID,
/// `US.1349...`) as it is; anything else raises an error that says why.
#[pg_extern(immutable, strict, parallel_safe)]
fn wa_normalize_recipient(recipient: &str) -> String {
    recipient_of(recipient).as_str().to_string()
}

fn recipient_of(recipient: &str) -> phone::Recipient {
    phone::Recipient::parse(recipient)
        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), phone::HINT))
}

/// A request body, or the rule it breaks as an ERROR with a hint.
fn request(built: Result<serde_json::Value, graph_api::InvalidMessage>) -> JsonB {
    match built {
        Ok(body) => JsonB(body),
        Err(e) => raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.problem, e.hint),
    }
}

/// The recipient of a send, which must be given.
fn given_recipient(recipient: Option<&str>) -> phone::Recipient {
    recipient_of(required(recipient, "recipient"))
}

// The arguments a send must have are Options, so that a NULL is an error that names it (see
// `required`), not pgrx's XX000.

#[pg_extern(immutable, parallel_safe)]
fn _wa_text_request(
    recipient: Option<&str>,
    body: Option<&str>,
    reply_to: Option<&str>,
    preview_url: default!(Option<bool>, false),
) -> JsonB {
    required!(body, preview_url);
    request(graph_api::text(&given_recipient(recipient), body, reply_to, preview_url))
}

#[pg_extern(immutable, parallel_safe, name = "_wa_media_request")]
fn _wa_media_request_with_context(
    recipient: Option<&str>,
    kind: Option<&str>,
    link_or_media_id: Option<&str>,
    caption: Option<&str>,
    filename: Option<&str>,
    reply_to: Option<&str>,
) -> JsonB {
    required!(kind, link_or_media_id);
    request(graph_api::media(&given_recipient(recipient), kind, link_or_media_id, caption, filename, reply_to))
}

#[pg_extern(immutable, parallel_safe, name = "_wa_template_request")]
fn _wa_template_request_with_context(
    recipient: Option<&str>,
    name: Option<&str>,
    language: Option<&str>,
    components: Option<JsonB>,
    reply_to: Option<&str>,
) -> JsonB {
    required!(name, language);
    request(graph_api::template(
        &given_recipient(recipient),
        name,
        language,
        components.as_ref().map(|c| &c.0),
        reply_to,
    ))
}

#[pg_extern(immutable, parallel_safe, name = "_wa_interactive_request")]
fn _wa_interactive_request_with_context(
    recipient: Option<&str>,
    interactive: Option<JsonB>,
    reply_to: Option<&str>,
) -> JsonB {
    request(graph_api::interactive(&given_recipient(recipient), &required(interactive, "interactive").0, reply_to))
}

#[pg_extern(immutable, parallel_safe, name = "_wa_location_request")]
fn _wa_location_request_with_context(
    recipient: Option<&str>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    name: Option<&str>,
    address: Option<&str>,
    reply_to: Option<&str>,
) -> JsonB {
    required!(latitude, longitude);
    request(graph_api::location(&given_recipient(recipient), latitude, longitude, name, address, reply_to))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_contacts_request(recipient: Option<&str>, contacts: Option<JsonB>, reply_to: Option<&str>) -> JsonB {
    request(graph_api::contacts(&given_recipient(recipient), &required(contacts, "contacts").0, reply_to))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_reaction_request(recipient: Option<&str>, message_wamid: Option<&str>, emoji: Option<&str>) -> JsonB {
    required!(message_wamid);
    JsonB(graph_api::reaction(&given_recipient(recipient), message_wamid, emoji.unwrap_or("")))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_mark_read_request(message_wamid: Option<&str>, typing: default!(Option<bool>, false)) -> JsonB {
    JsonB(graph_api::mark_read(required(message_wamid, "message_wamid"), required(typing, "typing")))
}

// The builders as a release before 0.2.0 declared them (without reply_to): its SQL calls these
// symbols from the moment this library is installed until ALTER EXTENSION UPDATE replaces it,
// so they stay, with no SQL of their own.

#[pg_extern(immutable, parallel_safe, sql = false)]
fn _wa_media_request(
    recipient: Option<&str>,
    kind: Option<&str>,
    link_or_media_id: Option<&str>,
    caption: Option<&str>,
    filename: Option<&str>,
) -> JsonB {
    _wa_media_request_with_context(recipient, kind, link_or_media_id, caption, filename, None)
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn _wa_template_request(
    recipient: Option<&str>,
    name: Option<&str>,
    language: Option<&str>,
    components: Option<JsonB>,
) -> JsonB {
    _wa_template_request_with_context(recipient, name, language, components, None)
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn _wa_interactive_request(recipient: Option<&str>, interactive: Option<JsonB>) -> JsonB {
    _wa_interactive_request_with_context(recipient, interactive, None)
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn _wa_location_request(
    recipient: Option<&str>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    name: Option<&str>,
    address: Option<&str>,
) -> JsonB {
    _wa_location_request_with_context(recipient, latitude, longitude, name, address, None)
}

// The action outbox's bodies (sql/outbound_actions.sql).

/// A block or unblock request's body: recipients already normalised. A NULL among them is
/// refused, not left out: the caller meant someone by it.
#[pg_extern(immutable, parallel_safe)]
fn _wa_block_request(recipients: Option<Vec<Option<String>>>) -> JsonB {
    let recipients: Vec<String> = required(recipients, "recipients")
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                raise(
                    PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                    format!("recipients[{}] is NULL: nobody to block or unblock there", i + 1),
                    "Pass each customer's phone number or BSUID, e.g. ARRAY['+15551234567'].",
                )
            })
        })
        .collect();
    request(graph_api::block_users(&recipients))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_call_action_request(call_id: Option<&str>, action: Option<&str>, sdp: Option<&str>) -> JsonB {
    required!(call_id, action);
    // (the SQL enum wa_call_action admits nothing else)
    let action = graph_api::CallAction::from_sql(action)
        .unwrap_or_else(|| error!("whatsapp_channel: unknown call action {action:?}"));
    request(graph_api::call_action(call_id, action, sdp))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_create_template_request(
    name: Option<&str>,
    language: Option<&str>,
    category: Option<&str>,
    components: Option<JsonB>,
) -> JsonB {
    required!(name, language, category);
    request(graph_api::create_template(name, language, category, &required(components, "components").0))
}

// The Groups API's bodies (wa_create_group() and the group functions of sql/outbound_actions.sql).

#[pg_extern(immutable, parallel_safe)]
fn _wa_create_group_request(
    subject: Option<&str>,
    description: Option<&str>,
    join_approval_required: Option<bool>,
) -> JsonB {
    required!(subject, join_approval_required);
    let join =
        if join_approval_required { graph_api::JoinApproval::Required } else { graph_api::JoinApproval::Automatic };
    request(graph_api::create_group(subject, description, join))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_reset_group_invite_link_request() -> JsonB {
    JsonB(graph_api::reset_invite_link())
}

/// An approval's or a rejection's body. (A NULL id is an empty one, refused as such: dropping
/// it would decide fewer requests than the caller named.)
#[pg_extern(immutable, parallel_safe)]
fn _wa_group_join_requests_request(join_request_ids: Option<Vec<Option<String>>>) -> JsonB {
    let ids: Vec<String> =
        required(join_request_ids, "join_request_ids").into_iter().map(Option::unwrap_or_default).collect();
    request(graph_api::join_requests(&ids))
}

/// A removal's body: participants already normalised.
#[pg_extern(immutable, parallel_safe)]
fn _wa_remove_group_participants_request(participants: Option<Vec<Option<String>>>) -> JsonB {
    let users: Vec<String> = required(participants, "participants").into_iter().flatten().collect();
    request(graph_api::remove_participants(&users))
}
