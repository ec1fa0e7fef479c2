//! `axum-receiver`: the yardstick issue 29 measures the webhook listener against. It is what a
//! team that wants WhatsApp in Postgres would write instead of this extension, written the
//! usual way: axum on tokio, a pool of tokio-postgres connections, and per POST
//!
//! 1. the `X-Hub-Signature-256` checked against the app secret (HMAC-SHA256, constant time);
//! 2. the body parsed, and its messages (`entry[].changes[].value.messages[]`) stored by one
//!    autocommitted INSERT with a notification per new message, deduplicated by a unique key;
//! 3. 200 once that INSERT has committed (an error: 500, so that Meta retries).
//!
//! No contacts, conversations, media or statuses: each is more work the extension does and this
//! does not, so the comparison flatters the receiver. The rows go to `bench_receiver_messages`
//! (created if missing), where `wa-sim load --stored-in bench_receiver_messages` counts them,
//! and the notifications to `wa_message`, with the same `{"id": …}` payload as the listener's.
//!
//!   axum-receiver --listen 127.0.0.1:8088 --dsn DSN --app-secret S --channel-id N [--pool 16]
//!
//! tokio uses a worker thread per core, as it does by default.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

struct Receiver {
    pool: deadpool_postgres::Pool,
    app_secret: Vec<u8>,
    channel_id: i64,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS bench_receiver_messages (
    id         bigserial PRIMARY KEY,
    channel_id bigint NOT NULL,
    wamid      text NOT NULL,
    wa_from    text,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel_id, wamid))";

const STORE: &str = "WITH ins AS (
        INSERT INTO bench_receiver_messages (channel_id, wamid, wa_from, payload)
        SELECT $1::bigint, m ->> 'id', m ->> 'from', m FROM jsonb_array_elements($2::text::jsonb) AS m
        ON CONFLICT (channel_id, wamid) DO NOTHING
        RETURNING id)
    SELECT count(pg_notify('wa_message', json_build_object('id', id, 'channel_id', $1)::text)) FROM ins";

/// `sha256=<hex>` of the body under the app secret, compared in constant time.
fn signature_ok(app_secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.strip_prefix("sha256=")) else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret) else { return false };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The messages of a webhook body, as one JSON array.
fn messages(body: &[u8]) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut out = Vec::new();
    for entry in v.get("entry")?.as_array()? {
        for change in entry.get("changes").and_then(|c| c.as_array()).into_iter().flatten() {
            if let Some(ms) = change.pointer("/value/messages").and_then(|m| m.as_array()) {
                out.extend(ms.iter().cloned());
            }
        }
    }
    Some(serde_json::Value::Array(out))
}

async fn webhook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = headers.get("x-hub-signature-256").and_then(|h| h.to_str().ok());
    if !signature_ok(&r.app_secret, header, &body) {
        return StatusCode::UNAUTHORIZED;
    }
    let Some(messages) = messages(&body) else { return StatusCode::BAD_REQUEST };
    let client = match r.pool.get().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("axum-receiver: pool: {e}");
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    };
    let statement = match client.prepare_cached(STORE).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("axum-receiver: prepare: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    };
    match client.query_one(&statement, &[&r.channel_id, &messages.to_string()]).await {
        Ok(_) => StatusCode::OK,
        Err(e) => {
            eprintln!("axum-receiver: store: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: axum-receiver --listen ADDR --dsn DSN --app-secret S --channel-id N [--pool 16]";
    let listen = flag(&args, "--listen").ok_or(usage)?;
    let dsn = flag(&args, "--dsn").ok_or(usage)?;
    let app_secret = flag(&args, "--app-secret").ok_or(usage)?.into_bytes();
    let channel_id: i64 =
        flag(&args, "--channel-id").ok_or(usage)?.parse().map_err(|e| format!("--channel-id: {e}"))?;
    let pool_size: usize =
        flag(&args, "--pool").unwrap_or_else(|| "16".into()).parse().map_err(|e| format!("--pool: {e}"))?;

    let config: tokio_postgres::Config = dsn.parse().map_err(|e| format!("--dsn: {e}"))?;
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager).max_size(pool_size).build().map_err(|e| e.to_string())?;
    pool.get().await.map_err(|e| format!("connecting: {e}"))?.batch_execute(SCHEMA).await.map_err(|e| e.to_string())?;

    let receiver = Arc::new(Receiver { pool, app_secret, channel_id });
    let app = Router::new().route("/webhook/{channel}", post(webhook)).with_state(receiver);
    let socket = tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("binding {listen}: {e}"))?;
    eprintln!("axum-receiver: listening on {listen}");
    axum::serve(socket, app).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_checked() {
        let body = br#"{"entry":[]}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_ok(b"secret", Some(&good), body));
        assert!(!signature_ok(b"other", Some(&good), body));
        assert!(!signature_ok(b"secret", None, body));
        assert!(!signature_ok(b"secret", Some("sha256=zz"), body));
    }

    #[test]
    fn messages_are_gathered_from_every_change() {
        let body = br#"{"entry":[{"changes":[{"value":{"messages":[{"id":"a"}]}},{"value":{"statuses":[]}}]},
                                  {"changes":[{"value":{"messages":[{"id":"b"},{"id":"c"}]}}]}]}"#;
        let ids: Vec<String> =
            messages(body).unwrap().as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(messages(b"not json").is_none());
    }
}
