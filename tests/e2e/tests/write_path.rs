//! The one inbound write path: a corpus of every kind of update stored as one batch and item by
//! item gives the same rows; statuses and edits that arrive out of order end the same way as in
//! order; and conversations are kept as state that the inbox's list reads.

use e2e::wa_sim::payloads::{self, Customer, MESSAGE_KINDS};
use e2e::{Channel, cluster};
use serde_json::{Value, json};

const T0: i64 = 1_767_000_000;

fn channel_id(ch: &Channel) -> i64 {
    cluster().connect().query_one("SELECT id FROM wa_channels WHERE name = $1", &[&ch.name]).unwrap().get(0)
}

/// Outbound messages that the delivery worker recorded as sent (the statuses below are for them).
fn outbound_sent(ch: &Channel, wamids: &[&str]) {
    let id = channel_id(ch);
    for w in wamids {
        cluster()
            .connect()
            .execute(
                "INSERT INTO wa_messages (channel_id, direction, wamid, type, body, status, recipient, payload, sent_at)
                 VALUES ($1, 'outbound', $2, 'text', 'hi', 'sent', '+16505557001', '{}', now())",
                &[&id, w],
            )
            .unwrap();
    }
}

fn message(from: &Customer, wamid: &str, kind: &str, object: Value, t: i64) -> Value {
    let mut m = json!({ "from": from.wa_id, "id": wamid, "timestamp": t.to_string(), "type": kind });
    m[kind] = object;
    json!({ "contacts": [{ "profile": { "name": from.name }, "wa_id": from.wa_id }], "messages": [m] })
}

/// Every kind wa-sim sends, from several customers, with redeliveries, an edit and a revoke
/// (one arriving before its message), a sender known only by BSUID who later shows a phone
/// number, a NUL character, an impossible timestamp, and statuses out of order.
fn corpus() -> Vec<Value> {
    let kim = Customer { wa_id: "16505557001".into(), name: "Kim".into() };
    let lee = Customer { wa_id: "16505557002".into(), name: "Lee".into() };
    let mut values = Vec::new();
    for (i, kind) in MESSAGE_KINDS.iter().filter(|k| **k != "system").enumerate() {
        let from = if i % 2 == 0 { &kim } else { &lee };
        values.push(
            payloads::message_value(kind, &format!("wamid.corpus.{kind}"), from, "hello", T0 + i as i64).unwrap(),
        );
    }
    // Redeliveries of two of them.
    values.push(payloads::message_value("text", "wamid.corpus.text", &kim, "hello", T0).unwrap());
    values.push(payloads::message_value("image", "wamid.corpus.image", &kim, "hello", T0 + 2).unwrap());
    // An edit of a message that has not arrived yet, then the message, then a revoke of another.
    values.push(message(
        &kim,
        "wamid.corpus.edit1",
        "edit",
        json!({ "original_message_id": "wamid.corpus.late", "message": { "type": "text", "text": { "body": "fixed" } } }),
        T0 + 40,
    ));
    values.push(message(&kim, "wamid.corpus.late", "text", json!({ "body": "typo" }), T0 + 30));
    values.push(message(
        &lee,
        "wamid.corpus.revoke1",
        "revoke",
        json!({ "original_message_id": "wamid.corpus.text" }),
        T0 + 41,
    ));
    // A customer known only by BSUID, then the same customer with a phone number too.
    values.push(json!({
        "contacts": [{ "profile": { "name": "Ana" }, "user_id": "US.13491208655302741918" }],
        "messages": [{ "from_user_id": "US.13491208655302741918", "id": "wamid.corpus.bsuid1", "timestamp": (T0 + 50).to_string(),
                       "type": "text", "text": { "body": "no phone" } }] }));
    values.push(json!({
        "contacts": [{ "profile": { "name": "Ana B" }, "user_id": "US.13491208655302741918", "wa_id": "16505557003" }],
        "messages": [{ "from": "16505557003", "from_user_id": "US.13491208655302741918", "id": "wamid.corpus.bsuid2",
                       "timestamp": (T0 + 51).to_string(), "type": "text", "text": { "body": "now with phone" } }] }));
    // Hostile but signed content: a NUL character, a timestamp no timestamptz holds.
    values.push(message(&lee, "wamid.corpus.nul", "text", json!({ "body": "a\u{0}b" }), T0 + 60));
    values.push(json!({
        "contacts": [{ "profile": { "name": "Lee" }, "wa_id": lee.wa_id }],
        "messages": [{ "from": lee.wa_id, "id": "wamid.corpus.when", "timestamp": "99999999999999", "type": "text", "text": { "body": "when?" } }] }));
    // Statuses: read before delivered; failed after sent; one for a send not recorded yet; a redelivery.
    for (wamid, status, t) in [
        ("wamid.out.1", "read", 72),
        ("wamid.out.1", "delivered", 71),
        ("wamid.out.1", "sent", 70),
        ("wamid.out.2", "delivered", 73),
        ("wamid.out.2", "failed", 74),
        ("wamid.out.3", "delivered", 75),
        ("wamid.out.1", "read", 72),
    ] {
        values.push(payloads::status_value(status, wamid, &kim.wa_id, T0 + t));
    }
    // Last, Kim changes number: later messages from the new number are the same contact.
    values.push(payloads::message_value("system", "wamid.corpus.system", &kim, "", T0 + 80).unwrap());
    values.push(message(
        &Customer { wa_id: "15550009999".into(), name: "Kim".into() },
        "wamid.corpus.after",
        "text",
        json!({ "body": "new phone" }),
        T0 + 81,
    ));
    values
}

/// Everything the write path stored for a channel, by natural keys (ids differ between channels).
fn rows_of(ch: &Channel) -> Vec<String> {
    let mut client = cluster().connect();
    let id = channel_id(ch);
    let mut rows = Vec::new();
    for (what, sql) in [
        (
            "message",
            "SELECT row(m.wamid, m.direction, m.type, m.body, m.status, k.wa_id, k.user_id,
                        CASE WHEN m.direction = 'inbound' THEN m.sent_at END, m.edited_at IS NOT NULL,
                        m.revoked_at IS NOT NULL, m.delivered_at, m.read_at, m.failed_at, m.error_code, m.media_id,
                        m.media_mime_type, m.voice, m.latitude, m.reply_to_wamid, m.reaction_emoji, m.interactive_reply_id,
                        m.button_payload, m.order_items, m.shared_contacts, m.system_type, m.original_wamid, m.payload)::text
               FROM wa_messages m LEFT JOIN wa_contacts k ON k.id = m.contact_id WHERE m.channel_id = $1 ORDER BY m.wamid",
        ),
        (
            "contact",
            // (A message with no usable timestamp opens the window at the moment it is stored.)
            "SELECT row(k.wa_id, k.user_id, k.profile_name, k.username,
                        CASE WHEN k.last_inbound_at > now() - interval '1 hour' THEN 'when stored' ELSE k.last_inbound_at::text END)::text
               FROM wa_contacts k WHERE k.channel_id = $1 ORDER BY 1",
        ),
        (
            "status",
            "SELECT row(s.wamid, s.status, s.status_at, s.error_code, s.payload)::text
               FROM wa_message_statuses s WHERE s.channel_id = $1 ORDER BY 1",
        ),
        (
            "media",
            "SELECT row(m.wamid, j.media_id, j.mime_type, j.expected_sha256)::text
               FROM wa_media j JOIN wa_messages m ON m.id = j.message_id WHERE j.channel_id = $1 ORDER BY 1",
        ),
        (
            "conversation",
            "SELECT row(c.wa_id, c.user_id, c.profile_name, c.unread_count, c.last_direction, c.last_type, c.last_body, m.wamid)::text
               FROM wa_conversations c JOIN wa_messages m ON m.id = c.last_message_id WHERE c.channel_id = $1 ORDER BY 1",
        ),
    ] {
        for row in client.query(sql, &[&id]).unwrap() {
            rows.push(format!("{what} {}", row.get::<_, String>(0)));
        }
    }
    rows
}

#[test]
fn a_batch_and_its_items_one_by_one_store_the_same_rows() {
    let together = cluster().add_channel("together");
    let one_by_one = cluster().add_channel("onebyone");
    for ch in [&together, &one_by_one] {
        outbound_sent(ch, &["wamid.out.1", "wamid.out.2"]);
    }
    let values = corpus();
    assert_eq!(together.post_signed(&payloads::batch(&together.phone_number_id, values.clone())).status, 200);
    for v in &values {
        assert_eq!(one_by_one.post_signed(&payloads::envelope(&one_by_one.phone_number_id, v.clone())).status, 200);
    }
    let (a, b) = (rows_of(&together), rows_of(&one_by_one));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "the batch and the items one by one differ");
    }
    assert_eq!(a.len(), b.len(), "the batch and the items one by one stored different numbers of rows");

    // And what they stored is right, not only the same.
    let mut client = cluster().connect();
    let id = channel_id(&together);
    let mut counter = cluster().connect();
    let mut count = |sql: &str| -> i64 { counter.query_one(sql, &[&id]).unwrap().get(0) };
    let kinds = MESSAGE_KINDS.len() as i64;
    // every kind (system included), the edit, the late original, the revoke, 2 BSUID, NUL, timestamp, after
    assert_eq!(count("SELECT count(*) FROM wa_messages WHERE channel_id = $1 AND direction = 'inbound'"), kinds + 8);
    assert_eq!(
        count(
            "SELECT count(*) FROM wa_messages WHERE channel_id = $1 AND wamid = 'wamid.corpus.late' AND edited_at IS NOT NULL"
        ),
        1,
        "an edit that arrived before its message is applied when the message comes"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM wa_messages WHERE channel_id = $1 AND wamid = 'wamid.corpus.text' AND revoked_at IS NOT NULL"
        ),
        1
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM wa_messages WHERE channel_id = $1 AND wamid = 'wamid.corpus.nul' AND body = 'a\u{FFFD}b'"
        ),
        1,
        "a NUL character is replaced, and the message stored"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM wa_messages WHERE channel_id = $1 AND wamid = 'wamid.corpus.when' AND sent_at IS NULL"
        ),
        1,
        "an impossible timestamp is stored as NULL (the payload keeps it)"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM wa_contacts WHERE channel_id = $1 AND user_id = 'US.13491208655302741918' AND wa_id = '16505557003'"
        ),
        1,
        "the BSUID-only sender and the same sender with a phone number are one contact"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id
              WHERE m.channel_id = $1 AND m.wamid IN ('wamid.corpus.text', 'wamid.corpus.after') GROUP BY k.id"
        ),
        2,
        "after a number change, the new number writes as the same contact"
    );
    let out1 = client
        .query_one(
            "SELECT status, delivered_at IS NOT NULL, read_at IS NOT NULL FROM wa_messages WHERE channel_id = $1 AND wamid = 'wamid.out.1'",
            &[&id],
        )
        .unwrap();
    assert_eq!((out1.get::<_, String>(0), out1.get(1), out1.get(2)), ("read".into(), true, true));
    let out2: (String, Option<i32>) = {
        let r = client
            .query_one(
                "SELECT status, error_code FROM wa_messages WHERE channel_id = $1 AND wamid = 'wamid.out.2'",
                &[&id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(out2.0, "failed");
    // Kim's conversation: every inbound message of Kim's, none answered.
    let kim: (i32, String) = {
        let r = client
            .query_one(
                "SELECT c.unread_count, m.wamid FROM wa_conversations c JOIN wa_messages m ON m.id = c.last_message_id
                  WHERE c.channel_id = $1 AND c.wa_id = '15550009999'",
                &[&id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let kims: i64 = client
        .query_one(
            "SELECT count(*) FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id
              WHERE m.channel_id = $1 AND k.wa_id = '15550009999' AND m.direction = 'inbound'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(kim, (kims as i32, "wamid.corpus.after".to_string()));
}

#[test]
fn a_status_for_a_send_recorded_later_is_applied_then() {
    let ch = cluster().add_channel("latesend");
    let v = payloads::status_value("delivered", "wamid.out.late", "16505557001", T0);
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, v)).status, 200);
    let mut client = cluster().connect();
    let id = channel_id(&ch);
    let msg: i64 = client
        .query_one(
            "INSERT INTO wa_messages (channel_id, direction, type, body, status, recipient, payload)
             VALUES ($1, 'outbound', 'text', 'hi', 'sending', '+16505557001', '{}') RETURNING id",
            &[&id],
        )
        .unwrap()
        .get(0);
    client.execute("SELECT _wa_mark_sent($1, 'wamid.out.late')", &[&msg]).unwrap();
    let row =
        client.query_one("SELECT status, delivered_at IS NOT NULL FROM wa_messages WHERE id = $1", &[&msg]).unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("delivered".into(), true));
}

/// A channel's conversation state, row by row, as text.
fn conversation_rows(client: &mut impl postgres::GenericClient, channel: &str) -> Vec<String> {
    client
        .query(
            "SELECT row(s.contact_id, s.last_message_id, s.last_direction, s.last_type, s.last_preview, s.unread_count)::text
               FROM wa_conversation_state s JOIN wa_channels c ON c.id = s.channel_id WHERE c.name = $1 ORDER BY 1",
            &[&channel],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn conversations_follow_inbound_outbound_and_read_receipts() {
    let ch = cluster().add_channel("convo");
    let wamid = ch.customer_writes("16505557101");
    ch.customer_writes("16505557101");
    let mut client = cluster().connect();
    let unread = |client: &mut postgres::Client| -> (i32, String) {
        let r = client
            .query_one(
                "SELECT unread_count, last_direction FROM wa_conversations WHERE channel = $1 AND wa_id = '16505557101'",
                &[&ch.name],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(unread(&mut client), (2, "inbound".into()));
    client.execute("SELECT wa_mark_read($1, $2)", &[&ch.name, &wamid]).unwrap();
    assert_eq!(unread(&mut client), (0, "inbound".into()), "a read receipt clears the count, not the last message");
    ch.customer_writes("16505557101");
    assert_eq!(unread(&mut client).0, 1);
    // Queued in an open transaction: the conversation moves at COMMIT, not before.
    let mut tx = client.transaction().unwrap();
    tx.execute("SELECT wa_send_text($1, '+16505557101', 'on it')", &[&ch.name]).unwrap();
    let mut other = cluster().connect();
    assert_eq!(unread(&mut other), (1, "inbound".into()));
    tx.commit().unwrap();
    let r = client
        .query_one(
            "SELECT unread_count, last_direction, last_body FROM wa_conversations WHERE channel = $1 AND wa_id = '16505557101'",
            &[&ch.name],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, i32>(0), r.get::<_, String>(1), r.get::<_, String>(2)),
        (0, "outbound".into(), "on it".into())
    );
    // The maintained state is what a rebuild from the messages gives.
    let kept = conversation_rows(&mut client, &ch.name);
    let rebuilt = {
        let mut tx = client.transaction().unwrap();
        tx.execute("SELECT _wa_rebuild_conversations(id) FROM wa_channels WHERE name = $1", &[&ch.name]).unwrap();
        let rows = conversation_rows(&mut tx, &ch.name);
        tx.rollback().unwrap();
        rows
    };
    assert_eq!(kept, rebuilt);

    // A deleted contact, then a deleted channel, take their conversations with them.
    let conversations = |client: &mut postgres::Client| -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM wa_conversation_state s WHERE s.channel_id = (SELECT id FROM wa_channels WHERE name = $1)",
                &[&ch.name],
            )
            .unwrap()
            .get(0)
    };
    ch.customer_writes("16505557102");
    assert_eq!(conversations(&mut client), 2);
    client
        .execute(
            "DELETE FROM wa_contacts WHERE wa_id = '16505557102' AND channel_id = (SELECT id FROM wa_channels WHERE name = $1)",
            &[&ch.name],
        )
        .unwrap();
    assert_eq!(conversations(&mut client), 1);
    let id: i64 = client.query_one("SELECT id FROM wa_channels WHERE name = $1", &[&ch.name]).unwrap().get(0);
    client.execute("DELETE FROM wa_channels WHERE id = $1", &[&id]).unwrap();
    let left: i64 =
        client.query_one("SELECT count(*) FROM wa_conversation_state WHERE channel_id = $1", &[&id]).unwrap().get(0);
    assert_eq!(left, 0);
}
