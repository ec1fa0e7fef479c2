//! The views over inbound content: conversations (last message, unread count, the 24-hour
//! window) and channel health.

use e2e::wa_sim::payloads;
use e2e::{cluster, http_get, http_post};
use serde_json::Value;

#[test]
fn conversations_show_last_message_unread_count_and_the_24_hour_window() {
    let ch = cluster().add_channel("conv");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for (i, text) in ["one", "two"].iter().enumerate() {
        let m = payloads::text_message(
            &ch.phone_number_id,
            &format!("wamid.conv.{i}"),
            "16505558007",
            "Dee",
            text,
            now - 60,
        );
        assert_eq!(ch.post_signed(&m).status, 200);
    }
    let mut db = cluster().connect();
    let row = |db: &mut postgres::Client| {
        db.query_one(
            "SELECT last_body, unread_count, window_open, window_closes_at > now() + interval '23 hours'
               FROM wa_conversations WHERE channel = $1 AND wa_id = '16505558007'",
            &[&ch.name],
        )
        .unwrap()
    };
    let r = row(&mut db);
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, i32>(1), r.get::<_, bool>(2), r.get::<_, bool>(3)),
        ("two".into(), 2, true, true)
    );
    db.execute("SELECT wa_send_text($1, '16505558007', 'answer')", &[&ch.name]).unwrap();
    let r = row(&mut db);
    assert_eq!((r.get::<_, String>(0), r.get::<_, i32>(1)), ("answer".into(), 0));
    // A customer who wrote 25 hours ago: the window is closed.
    let old =
        payloads::text_message(&ch.phone_number_id, "wamid.conv.old", "16505558008", "Eli", "late", now - 25 * 3600);
    assert_eq!(ch.post_signed(&old).status, 200);
    let open: bool = db
        .query_one("SELECT window_open FROM wa_conversations WHERE channel = $1 AND wa_id = '16505558008'", &[&ch.name])
        .unwrap()
        .get(0);
    assert!(!open);
}

#[test]
fn health_view_answers_the_seeds_common_issues() {
    let ch = cluster().add_channel("health");
    let url = cluster().webhook_url(&ch.name);
    assert_eq!(
        http_get(&format!("{url}?hub.mode=subscribe&hub.verify_token={}&hub.challenge=1", ch.verify_token)).status,
        200
    );
    assert_eq!(http_get(&format!("{url}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")).status, 403);
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let wrong = e2e::whatsapp_cloud::signature::sign(b"ffffffffffffffffffffffffffffffff", body);
    assert_eq!(http_post(&url, body, Some(&wrong)).status, 401);
    assert_eq!(
        ch.post_signed(&payloads::text_message(&ch.phone_number_id, "wamid.health.1", "16505558009", "H", "ok", 1))
            .status,
        200
    );
    let row = e2e::poll(|| {
        let r = cluster()
            .connect()
            .query_one(
                "SELECT last_verified_handshake_at IS NOT NULL, last_verified_post_at IS NOT NULL,
                        last_signature_failure_cause, last_verify_token_mismatch_at IS NOT NULL, counts
                   FROM wa_channel_health WHERE channel = $1",
                &[&ch.name],
            )
            .unwrap();
        // The listener writes its counts at most once a second: wait for both.
        let counts: Value = r.get(4);
        (r.get::<_, Option<String>>(2).is_some() && counts["stored"].as_i64().is_some()).then_some(r)
    })
    .expect("the signature failure is counted");
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1) && row.get::<_, bool>(3));
    assert!(row.get::<_, String>(2).contains("wrong app_secret"));
    let counts: Value = row.get(4);
    assert_eq!((counts["stored"].as_i64(), counts["signature_mismatch"].as_i64()), (Some(1), Some(1)));
}
