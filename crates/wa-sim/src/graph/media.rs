//! Media and templates as the Graph API serves them: media metadata, downloads and uploads
//! (`/{id}`, the download URL, `/media`) and `/message_templates`.

use super::sends::meta_error;
use super::state::{Media, State};
use bounded_http::{Request, Response};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

fn json_response((status, body, _): (u16, Option<Value>, Option<String>)) -> Response {
    Response::json(status, body.unwrap_or(Value::Null).to_string())
}

/// Media metadata, downloads and uploads, and the template list: `None` for any other request.
pub(super) fn media_and_templates(state: &State, request: &Request, authorization: Option<&str>) -> Option<Response> {
    let parts: Vec<&str> = request.path().trim_matches('/').split('/').collect();
    let authorized = authorization.is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7);
    let unauthorized = || json_response(meta_error(401, 190, "Invalid OAuth access token - Cannot parse access token"));
    match (request.method.as_str(), parts.as_slice()) {
        // The short-lived download URL handed out below; Meta requires the Bearer token on it too.
        ("GET", ["download", id]) => {
            if !authorized {
                return Some(unauthorized());
            }
            if state.expire_next.lock().unwrap().remove(*id) {
                return Some(Response::text(404, "URL signature expired"));
            }
            let media = state.media.lock().unwrap().get(*id).cloned();
            Some(match media {
                Some(m) => Response::bytes(200, &m.mime_type, m.bytes),
                None => Response::text(404, "Not Found"),
            })
        }
        ("GET", [version, id]) if version.starts_with('v') && id.bytes().all(|b| b.is_ascii_digit()) => {
            // As for sends: the token `require_token` set for the asking number, if any.
            let asking = request.query().split('&').find_map(|kv| kv.strip_prefix("phone_number_id="));
            let presented = authorization.and_then(|a| a.strip_prefix("Bearer ")).filter(|t| !t.is_empty());
            if state.refuses_token(asking.unwrap_or_default(), presented) {
                return Some(unauthorized());
            }
            let media = state.media.lock().unwrap().get(*id).cloned();
            Some(match media {
                Some(m) => {
                    use std::fmt::Write;
                    let digest = sha256_base64(&m.bytes);
                    let mut url = state.base_url.lock().unwrap().clone();
                    let _ = write!(url, "/download/{id}");
                    Response::json(
                        200,
                        json!({ "messaging_product": "whatsapp", "url": url, "mime_type": m.mime_type,
                                "sha256": digest, "file_size": m.bytes.len(), "id": id })
                        .to_string(),
                    )
                }
                None => json_response(meta_error(
                    400,
                    100,
                    &format!("(#100) Unsupported get request. Object with ID '{id}' does not exist"),
                )),
            })
        }
        ("GET", [_version, waba_id, "message_templates"]) => {
            if !authorized {
                return Some(unauthorized());
            }
            let list = state.templates.lock().unwrap().get(*waba_id).cloned().unwrap_or_else(|| json!([]));
            Some(Response::json(200, json!({ "data": list, "paging": {} }).to_string()))
        }
        ("POST", [_version, _phone_number_id, "media"]) => {
            if !authorized {
                return Some(unauthorized());
            }
            let content_type = request.header("Content-Type").unwrap_or_default();
            Some(match multipart_file(content_type, &request.body) {
                Some((mime_type, bytes)) => {
                    let id = format!("{}", 2_000_000_000_000_000u64 + state.next_id.fetch_add(1, Ordering::Relaxed));
                    state.media.lock().unwrap().insert(id.clone(), Media { mime_type, bytes });
                    Response::json(200, json!({ "id": id }).to_string())
                }
                None => json_response(meta_error(400, 100, "(#100) The parameter file is required.")),
            })
        }
        _ => None,
    }
}

/// The `file` part of a multipart/form-data body: its Content-Type and bytes.
fn multipart_file(content_type: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let boundary = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?.trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut rest = body;
    while let Some(start) = find(rest, &delimiter) {
        rest = &rest[start + delimiter.len()..];
        let part_end = find(rest, &delimiter).unwrap_or(rest.len());
        let part = &rest[..part_end];
        let head_end = find(part, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..head_end]).to_ascii_lowercase();
        if head.contains("name=\"file\"") {
            let mime = head
                .lines()
                .find_map(|l| l.strip_prefix("content-type:"))
                .unwrap_or("application/octet-stream")
                .trim()
                .to_string();
            let data = &part[head_end + 4..];
            let data = data.strip_suffix(b"\r\n").unwrap_or(data);
            return Some((mime, data.to_vec()));
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Meta describes media by the base64 SHA-256 of its bytes.
pub fn sha256_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}
