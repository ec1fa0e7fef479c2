//! Inbound: Meta's GET handshake and signed POSTs, against the listener of a real cluster.

use e2e::wa_sim::payloads;
use e2e::{Listener, cluster, http_get, http_post, poll};
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn handshake_echoes_the_challenge_for_the_right_verify_token() {
    let ch = cluster().add_channel("handshake");
    let url = format!(
        "{}?hub.mode=subscribe&hub.verify_token={}&hub.challenge=1158201444",
        cluster().webhook_url(&ch.name),
        ch.verify_token
    );
    let answer = http_get(&url);
    assert_eq!((answer.status, answer.body.as_str()), (200, "1158201444"));
}

#[test]
fn handshake_with_a_wrong_verify_token_is_403_and_logged() {
    let ch = cluster().add_channel("badtoken");
    let url = format!("{}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=42", cluster().webhook_url(&ch.name));
    let answer = http_get(&url);
    assert_eq!(answer.status, 403);
    assert_ne!(answer.body, "42");
    let expected = format!("verify token does not match the one set for channel '{}'", ch.name);
    cluster().wait_for_log(&expected);
}

#[test]
fn unknown_channel_and_unknown_paths_are_404() {
    assert_eq!(http_post(&cluster().webhook_url("no-such-channel"), b"{}", None).status, 404);
    assert_eq!(http_get(&format!("http://{}/other", cluster().listener)).status, 404);
}

#[test]
fn signed_text_message_becomes_a_row_a_contact_and_a_notification() {
    let ch = cluster().add_channel("text");
    let mut listener = Listener::new(&["wa_message"]);
    let wamid = format!("wamid.text.{}", ch.name);
    let answer = ch.post_signed(&payloads::text_message(
        &ch.phone_number_id,
        &wamid,
        "16505551234",
        "Sheena Nelson",
        "Does it come in another color?",
        1749416383,
    ));
    assert_eq!((answer.status, answer.body.as_str()), (200, "OK"));

    // The notification names the row (ids only); the row says the rest.
    let (_, note) = listener.next_matching(|_, p| p["channel_id"] == ch.id).expect("a wa_message notification");
    let id = note["id"].as_i64().unwrap();
    let row = cluster()
        .connect()
        .query_one(
            "SELECT m.direction, m.wamid, m.body, m.status, m.sent_at = to_timestamp(1749416383), k.wa_id, k.profile_name, m.payload->'text'->>'body',
                    m.type, m.contact_id
               FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id WHERE m.id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(8), "text");
    assert_eq!(note["contact_id"], row.get::<_, i64>(9));
    assert_eq!(row.get::<_, String>(0), "inbound");
    assert_eq!(row.get::<_, String>(1), wamid);
    assert_eq!(row.get::<_, String>(2), "Does it come in another color?");
    assert_eq!(row.get::<_, String>(3), "received");
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, String>(5), "16505551234");
    assert_eq!(row.get::<_, String>(6), "Sheena Nelson");
    assert_eq!(row.get::<_, String>(7), "Does it come in another color?");
    // The raw event keeps the signature, so it can be checked again later.
    let (signature, body): (String, Vec<u8>) = {
        let r = cluster()
            .connect()
            .query_one(
                "SELECT e.headers ->> 'x-hub-signature-256', e.body FROM wa_webhook_events e JOIN wa_messages m ON m.webhook_event_id = e.id WHERE m.id = $1",
                &[&id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(e2e::whatsapp_cloud::signature::verify(ch.app_secret.as_bytes(), &body, Some(&signature)), Ok(()));
}

#[test]
fn bad_or_missing_signature_is_401_and_stores_nothing() {
    let ch = cluster().add_channel("badsig");
    let body = serde_json::to_vec(&payloads::text_message(
        &ch.phone_number_id,
        "wamid.badsig",
        "16505551234",
        "Eve",
        "hi",
        now(),
    ))
    .unwrap();
    let url = cluster().webhook_url(&ch.name);
    let wrong = e2e::whatsapp_cloud::signature::sign(b"0123456789abcdef0123456789abcdef", &body);
    for signature in [Some(wrong.as_str()), None, Some("sha1=abc")] {
        let answer = http_post(&url, &body, signature);
        assert_eq!((answer.status, answer.body.as_str()), (401, "Signature mismatch"));
    }
    cluster().wait_for_log(&format!(
        "webhook POST for channel '{}' refused: Signature mismatch. Likely cause: wrong app_secret",
        ch.name
    ));
    let stored: i64 = cluster()
        .connect()
        .query_one(
            "SELECT (SELECT count(*) FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1)
                  + (SELECT count(*) FROM wa_messages WHERE wamid = 'wamid.badsig')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
}

#[test]
fn redelivery_creates_no_duplicate_row_or_notification() {
    let ch = cluster().add_channel("redeliver");
    let mut listener = Listener::new(&["wa_message"]);
    let first = payloads::text_message(&ch.phone_number_id, "wamid.redeliver.1", "16505550001", "A", "once", now());
    for _ in 0..3 {
        assert_eq!(ch.post_signed(&first).status, 200);
    }
    let second = payloads::text_message(&ch.phone_number_id, "wamid.redeliver.2", "16505550001", "A", "twice", now());
    assert_eq!(ch.post_signed(&second).status, 200);
    // Notifications arrive in commit order: if a duplicate had been notified, it would come
    // before the second message's notification.
    let mut seen = Vec::new();
    while let Some((_, p)) = listener.next_matching(|_, p| p["channel_id"] == ch.id) {
        seen.push(p["id"].as_i64().unwrap());
        if seen.len() == 2 {
            break;
        }
    }
    let ids: Vec<i64> = cluster()
        .connect()
        .query(
            "SELECT m.id FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 ORDER BY m.id",
            &[&ch.name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), 2, "one row per wamid");
    assert_eq!(seen, ids, "one notification per row, in order");
    let events: i64 = cluster()
        .connect()
        .query_one(
            "SELECT count(*) FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(events, 4, "every verified POST is kept raw");
}

#[test]
fn every_message_of_every_entry_and_change_is_stored() {
    let ch = cluster().add_channel("batch");
    let message = |id: &str| json!({"from": "16505550002", "id": id, "timestamp": "1749416383", "type": "text", "text": {"body": id}});
    let value = |ids: &[&str]| {
        json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": ch.phone_number_id},
            "contacts": [{"profile": {"name": "B"}, "wa_id": "16505550002"}],
            "messages": ids.iter().map(|i| message(i)).collect::<Vec<_>>()
        })
    };
    let payload = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [{"field": "messages", "value": value(&["wamid.b1", "wamid.b2"])}, {"field": "messages", "value": value(&["wamid.b3"])}]},
        {"id": "1", "changes": [{"field": "messages", "value": value(&["wamid.b4", "wamid.b5"])}]}
    ]});
    assert_eq!(ch.post_signed(&payload).status, 200);
    let bodies: Vec<String> = cluster()
        .connect()
        .query("SELECT m.body FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 ORDER BY m.id", &[&ch.name])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(bodies, ["wamid.b1", "wamid.b2", "wamid.b3", "wamid.b4", "wamid.b5"]);
}

#[test]
fn a_large_signed_post_is_stored_like_a_small_one() {
    // Over 32 KB: checked and parsed on the blocking pool rather than the connection's thread,
    // and answered only after its COMMIT all the same.
    let ch = cluster().add_channel("large_post");
    let message = |n: usize| {
        json!({"from": "16505550003", "id": format!("wamid.large.{n}"), "timestamp": "1749416383", "type": "text",
               "text": {"body": format!("message {n}: {}", "x".repeat(200))}})
    };
    let payload = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": ch.phone_number_id},
        "contacts": [{"profile": {"name": "L"}, "wa_id": "16505550003"}],
        "messages": (0..300).map(message).collect::<Vec<_>>()
    }}]}]});
    assert!(payload.to_string().len() > 64 << 10, "the body must be well over 32 KB");
    assert_eq!(ch.post_signed(&payload).status, 200);
    // Answered after COMMIT: every message is readable now, no polling.
    let stored: i64 = cluster()
        .connect()
        .query_one(
            "SELECT count(*) FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 300);
}

#[test]
fn signed_invalid_json_is_kept_as_an_invalid_event_and_answered_200() {
    let ch = cluster().add_channel("badjson");
    let body = b"{not json";
    let signature = e2e::whatsapp_cloud::signature::sign(ch.app_secret.as_bytes(), body);
    assert_eq!(http_post(&cluster().webhook_url(&ch.name), body, Some(&signature)).status, 200);
    let (outcome, error, raw): (String, String, Vec<u8>) = poll(|| {
        cluster()
            .connect()
            .query_opt("SELECT e.outcome, e.error, e.body FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1", &[&ch.name])
            .unwrap()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
    })
    .unwrap();
    assert_eq!(outcome, "invalid_payload");
    assert!(error.contains("not JSON"), "{error}");
    assert_eq!(raw, body);
}

#[test]
fn body_over_the_limit_is_413() {
    let ch = cluster().add_channel("big");
    let body = vec![b' '; 5 * 1024 * 1024]; // default limit: 4 MB
    let signature = e2e::whatsapp_cloud::signature::sign(ch.app_secret.as_bytes(), &body);
    assert_eq!(http_post(&cluster().webhook_url(&ch.name), &body, Some(&signature)).status, 413);
}

#[test]
fn a_stalled_client_does_not_hold_up_other_webhooks() {
    use std::io::Write;
    let ch = cluster().add_channel("stall");
    // Announces a body and never sends it.
    let mut stalled = std::net::TcpStream::connect(&cluster().listener).unwrap();
    write!(stalled, "POST /webhook/{} HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{{\"entry\":", ch.name).unwrap();
    // Meanwhile, many connections opened at once are all answered.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let ch = &ch;
                s.spawn(move || {
                    let m = payloads::text_message(
                        &ch.phone_number_id,
                        &format!("wamid.stall.{i}"),
                        "16505550003",
                        "S",
                        "x",
                        now(),
                    );
                    ch.post_signed(&m).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    drop(stalled);
}

#[test]
fn plain_messages_take_the_set_based_fast_path() {
    let ch = cluster().add_channel("fast");
    let calls = || -> i64 {
        cluster()
            .connect()
            .query_one("SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_user_functions WHERE funcname = '_wa_receive_messages'", &[])
            .unwrap()
            .get(0)
    };
    // Function statistics reach the view at most once a second: keep posting until they do.
    let mut i = 0;
    let used = poll(|| {
        i += 1;
        let m = payloads::text_message(&ch.phone_number_id, &format!("wamid.fast.{i}"), "16505550004", "F", "x", now());
        assert_eq!(ch.post_signed(&m).status, 200);
        (calls() > 0).then_some(())
    });
    assert!(used.is_some(), "a plain text POST never went through _wa_receive_messages");
}

#[test]
fn a_flood_of_bad_signatures_is_logged_once_and_counted_exactly() {
    let ch = cluster().add_channel("flood");
    let body =
        serde_json::to_vec(&payloads::text_message(&ch.phone_number_id, "wamid.flood", "16505550005", "F", "x", now()))
            .unwrap();
    let wrong = e2e::whatsapp_cloud::signature::sign(b"ffffffffffffffffffffffffffffffff", &body);
    for _ in 0..20 {
        assert_eq!(http_post(&cluster().webhook_url(&ch.name), &body, Some(&wrong)).status, 401);
    }
    // Every rejection is counted (held-back ones within the listener's periodic flush)...
    let counted = poll(|| {
        let n: Option<i64> = cluster()
            .connect()
            .query_one(
                "SELECT (counts ->> 'signature_mismatch')::bigint FROM wa_channel_health WHERE channel = $1",
                &[&ch.name],
            )
            .unwrap()
            .get(0);
        (n == Some(20)).then_some(())
    });
    assert!(counted.is_some(), "the 20 rejections were not all counted");
    // ...but the log has one line for them, not twenty.
    let needle = format!("webhook POST for channel '{}' refused", ch.name);
    assert_eq!(cluster().log().matches(&needle).count(), 1);
}
