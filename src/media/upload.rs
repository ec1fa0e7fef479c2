//! Outbound media: uploading a file to get a media id, from the caller's session. (Inbound media
//! is downloaded by the delivery worker: see [`super::download`].)

use crate::channels::graph_session::{base_and_version, channel_api, session_agent, unreachable_graph_api};
use crate::pg::error::raise;
use crate::required;
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;
use whatsapp_cloud::graph_api;

/// Uploads a file for the channel (multipart, as Meta's media endpoint wants) and returns its
/// media id, for wa_send_media(..., link_or_media_id => <id>): Meta recommends ids over links.
/// Uploaded ids live 30 days. It calls the Graph API from this session, with the usual timeout.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn wa_upload_media(
    channel: Option<&str>,
    content: Option<&[u8]>,
    mime_type: Option<&str>,
    filename: default!(Option<&str>, "NULL"),
) -> String {
    required!(channel, content, mime_type);
    if content.is_empty() {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "the file is empty".into(), "Pass the file's bytes.");
    }
    if !mime_type.contains('/') {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{mime_type:?} is not a MIME type"),
            "Pass e.g. image/jpeg, image/png, video/mp4, audio/ogg or application/pdf.",
        );
    }
    let api = channel_api(channel);
    let (base, version) = base_and_version(&api);
    let (content_type, body) = graph_api::media_upload(content, mime_type, filename);
    let answer = session_agent()
        .post(&graph_api::media_upload_url(&base, &version, &api.phone_number_id))
        .header("Authorization", format!("Bearer {}", api.access_token.expose()))
        .content_type(&content_type)
        .send(&body[..]);
    let (status, body) = match answer {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_vec().unwrap_or_default()),
        Err(e) => unreachable_graph_api(e),
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match json.get("id").and_then(serde_json::Value::as_str) {
        Some(id) if (200..300).contains(&status) => id.to_string(),
        _ => {
            let graph_api::SendOutcome::Failed(e) = graph_api::parse_send_response(status.max(400), &body) else {
                unreachable!()
            };
            raise(
                PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
                format!("the Graph API refused the upload: {}", e.message),
                graph_api::hint(e.code).unwrap_or("Check the file's type and size against Meta's media limits."),
            )
        }
    }
}
