//! Coexistence onboarding: the chat history a business shares (the `history` webhook) and the
//! contacts of its WhatsApp Business app (`smb_app_state_sync`) are stored like live traffic,
//! flagged as history, never duplicating what arrived live, and without unread counts.

use e2e::wa_sim::payloads::{self, Customer, HistoryMessage};
use e2e::{Listener, cluster, poll};
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn message(wamid: &str, from_business: bool, kind: &str, body: &str, timestamp: i64, status: &str) -> HistoryMessage {
    HistoryMessage {
        wamid: wamid.into(),
        from_business,
        kind: kind.into(),
        body: body.into(),
        timestamp,
        status: status.into(),
    }
}

#[test]
fn shared_history_is_stored_once_in_the_past_without_unread_messages() {
    let ch = cluster().add_channel("history");
    let mut listener = Listener::new(&["wa_history", "wa_message"]);
    let mut db = cluster().connect();
    let channel_id: i64 = db.query_one("SELECT id FROM wa_channels WHERE name = $1", &[&ch.name]).unwrap().get(0);
    // Ann wrote live while the sync was running: that message is in the history too.
    let live = ch.customer_writes("15550005001");
    let t = now();
    let chunk = payloads::history_value(
        0,
        1,
        55,
        &[
            (
                "15550005001".into(),
                vec![
                    message("wamid.hist.1", true, "text", "Here is the info you asked for", t - 7200, "READ"),
                    message("wamid.hist.2", true, "media_placeholder", "", t - 7100, "PLAYED"),
                    message(&live, false, "text", "Hello", t, "READ"),
                ],
            ),
            (
                "15550005002".into(),
                vec![message("wamid.hist.3", true, "text", "Thanks for your order!", t - 3 * 86_400, "DELIVERED")],
            ),
            ("15550005003".into(), vec![message("wamid.hist.4", false, "text", "Is it in stock?", t - 3600, "READ")]),
        ],
    );
    let body = payloads::envelope(&ch.phone_number_id, chunk);
    assert_eq!(ch.post_signed(&body).status, 200);
    assert_eq!(ch.post_signed(&body).status, 200, "a redelivered chunk is answered 200 too");
    // Each chunk is notified (the redelivered one again, as it is counted again), by the
    // channel's id only; how far the sync is, is in the channel's counter.
    let history_notes = |listener: &mut Listener| {
        listener.drain("wa_history").into_iter().filter(|p| p["channel_id"] == channel_id).collect::<Vec<_>>()
    };
    assert_eq!(history_notes(&mut listener), vec![json!({"channel_id": channel_id}); 2]);
    let detail = |db: &mut postgres::Client, kind: &str| -> String {
        db.query_one(
            "SELECT last_detail FROM wa_channel_counters WHERE channel_id = $1 AND kind = $2",
            &[&channel_id, &kind],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(detail(&mut db, "history_chunk"), "phase 0, chunk 1, 55%, 5 messages");

    // Each wamid once; the live message stays live; the rest is history, the business's side as
    // outbound rows from the business app with the status the history gives.
    let rows = db
        .query(
            "SELECT m.wamid, m.direction, m.source, m.status, m.from_history, m.type, k.wa_id
               FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id WHERE m.channel_id = $1 ORDER BY m.wamid COLLATE \"C\"",
            &[&channel_id],
        )
        .unwrap();
    type Row = (String, String, Option<String>, String, bool, String, Option<String>);
    let got: Vec<Row> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))).collect();
    let row = |w: &str, d: &str, s: Option<&str>, st: &str, h: bool, ty: &str, k: &str| -> Row {
        (w.into(), d.into(), s.map(str::to_string), st.into(), h, ty.into(), Some(k.into()))
    };
    assert_eq!(
        got,
        [
            row(&live, "inbound", None, "received", false, "text", "15550005001"),
            row("wamid.hist.1", "outbound", Some("business_app"), "read", true, "text", "15550005001"),
            row("wamid.hist.2", "outbound", Some("business_app"), "played", true, "media_placeholder", "15550005001"),
            row("wamid.hist.3", "outbound", Some("business_app"), "delivered", true, "text", "15550005002"),
            row("wamid.hist.4", "inbound", None, "received", true, "text", "15550005003"),
        ]
    );

    // History is in the past: Ann's conversation still shows her live message, unread 1; the
    // others show their history, unread 0, at the time it was sent. A customer's history
    // message within 24 hours opens the window as it would have live.
    let conversations = db
        .query(
            "SELECT wa_id, last_body, unread_count, extract(epoch FROM last_message_at)::bigint, window_open
               FROM wa_conversations WHERE channel = $1 ORDER BY wa_id",
            &[&ch.name],
        )
        .unwrap();
    type Conversation = (Option<String>, Option<String>, i32, i64, bool);
    let got: Vec<Conversation> =
        conversations.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    assert_eq!(got.len(), 3);
    assert_eq!((got[0].1.as_deref(), got[0].2, got[0].4), (Some("Hello"), 1, true));
    assert_eq!(
        (got[1].1.as_deref(), got[1].2, got[1].3, got[1].4),
        (Some("Thanks for your order!"), 0, t - 3 * 86_400, false)
    );
    assert_eq!((got[2].1.as_deref(), got[2].2, got[2].3, got[2].4), (Some("Is it in stock?"), 0, t - 3600, true));

    // The rebuilt state equals the one kept message by message.
    let state = |db: &mut postgres::Client| -> Vec<String> {
        db.query(
            "SELECT concat_ws(' ', contact_id, group_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
               FROM wa_conversation_state WHERE channel_id = $1 ORDER BY 1",
            &[&channel_id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let kept = state(&mut db);
    db.query_one("SELECT _wa_rebuild_conversations($1)", &[&channel_id]).unwrap();
    assert_eq!(state(&mut db), kept);

    // The placeholder's media arrives later under the same wamid: the row is filled in and its
    // download is queued.
    let media = payloads::history_media_value(
        "wamid.hist.2",
        &Customer { wa_id: "15550005001".into(), name: "Ann".into() },
        "Black Prince echeveria",
        t - 7100,
    );
    assert_eq!(ch.post_signed(&payloads::envelope_with_field(&ch.phone_number_id, "history", media)).status, 200);
    let filled = poll(|| {
        let r = db
            .query_one(
                "SELECT m.type, m.body, m.media_id, (SELECT count(*) FROM wa_media j WHERE j.message_id = m.id), m.from_history
                   FROM wa_messages m WHERE m.channel_id = $1 AND m.wamid = 'wamid.hist.2'",
                &[&channel_id],
            )
            .unwrap();
        let got: (String, Option<String>, Option<String>, i64, bool) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        (got.0 == "image").then_some(got)
    })
    .expect("the placeholder was never filled in");
    assert_eq!(
        (filled.1.as_deref(), filled.2.is_some(), filled.3, filled.4),
        (Some("Black Prince echeveria"), true, 1, true)
    );
    // Notified (a history message is notified only when filled in), by its id.
    let placeholder: i64 = db
        .query_one("SELECT id FROM wa_messages WHERE channel_id = $1 AND wamid = 'wamid.hist.2'", &[&channel_id])
        .unwrap()
        .get(0);
    listener
        .next_matching(|c, p| c == "wa_message" && p["id"] == placeholder && p["channel_id"] == channel_id)
        .expect("the filled-in placeholder was not notified");

    // The sync's progress is in the channel's health; a business that declines says so.
    let declined = payloads::envelope(&ch.phone_number_id, payloads::history_declined_value());
    assert_eq!(ch.post_signed(&declined).status, 200);
    let counts: serde_json::Value =
        db.query_one("SELECT counts FROM wa_channel_health WHERE channel = $1", &[&ch.name]).unwrap().get(0);
    assert_eq!((counts["history_chunk"].as_i64(), counts["history_declined"].as_i64()), (Some(2), Some(1)));
    // Notified like a chunk.
    assert_eq!(history_notes(&mut listener), [json!({"channel_id": channel_id})]);
    let refusal = detail(&mut db, "history_declined");
    assert!(refusal.starts_with("error 2593109: ") && refusal.contains("turned off"), "{refusal}");
}

#[test]
fn the_business_apps_contacts_are_saved_by_name() {
    let ch = cluster().add_channel("contacts-sync");
    let post = |contacts: &[(&str, &str, &str)]| {
        let value = payloads::state_sync_value(contacts, now());
        assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, value)).status, 200);
    };
    post(&[("15550005101", "Sheena Nelson", "add"), ("15550005102", "Bo Li", "add")]);
    ch.customer_writes("15550005101");
    post(&[("15550005102", "Bo Li", "remove")]);
    let mut db = cluster().connect();
    let rows = db
        .query(
            "SELECT k.wa_id, k.saved_name, k.profile_name FROM wa_contacts k JOIN wa_channels c ON c.id = k.channel_id
              WHERE c.name = $1 ORDER BY 1",
            &[&ch.name],
        )
        .unwrap();
    let got: Vec<(Option<String>, Option<String>, Option<String>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        got,
        [
            (Some("15550005101".into()), Some("Sheena Nelson".into()), Some("Customer".into())),
            (Some("15550005102".into()), None, None),
        ]
    );
    let saved: Option<String> =
        db.query_one("SELECT saved_name FROM wa_conversations WHERE channel = $1", &[&ch.name]).unwrap().get(0);
    assert_eq!(saved.as_deref(), Some("Sheena Nelson"));
}
