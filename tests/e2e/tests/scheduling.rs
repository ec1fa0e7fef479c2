//! Quoting, contact cards, scheduling, cancelling and retrying (README, "Scheduling, cancelling
//! and retrying"), end to end: what each function queues reaches the simulated Graph API with
//! Meta's JSON, at its time and in each customer's order, and Meta's errors are recorded.

use e2e::wa_sim::graph::{Fault, Received};
use e2e::{DEADLINE, Listener, cluster, poll};
use serde_json::json;

fn status_of(id: i64) -> (String, Option<String>, Option<i32>, Option<String>) {
    let row = cluster()
        .connect()
        .query_one("SELECT status, wamid, error_code, error_title FROM wa_messages WHERE id = $1", &[&id])
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

fn wait_status(id: i64, wanted: &str) -> (String, Option<String>, Option<i32>, Option<String>) {
    poll(|| Some(status_of(id)).filter(|s| s.0 == wanted))
        .unwrap_or_else(|| panic!("message {id} never reached {wanted}: {:?}", status_of(id)))
}

/// The sends the simulator received for one recipient, in the order they arrived.
fn sends_to(to: &str) -> Vec<Received> {
    cluster().graph.received().into_iter().filter(|r| r.json()["to"] == to).collect()
}

fn bodies_to(to: &str) -> Vec<String> {
    sends_to(to).iter().map(|r| r.json()["text"]["body"].as_str().unwrap_or_default().to_string()).collect()
}

/// Waits for a wa_status notification about message `id`.
fn notified(listener: &mut Listener, id: i64) {
    listener
        .next_matching(|c, p| c == "wa_status" && p["id"] == id)
        .unwrap_or_else(|| panic!("no wa_status notification for message {id}"));
}

#[test]
fn every_kind_but_reactions_quotes_a_message_and_contact_cards_arrive_as_meta_documents_them() {
    let ch = cluster().add_channel("quote");
    let quoted = ch.customer_writes("15550281001");
    let mut db = cluster().connect();
    let cards = json!([{ "name": { "formatted_name": "Ann Lee", "first_name": "Ann", "last_name": "Lee" },
                         "phones": [{ "phone": "+15557654321", "type": "WORK", "wa_id": "15557654321" }],
                         "emails": [{ "email": "ann@example.com", "type": "WORK" }] }]);
    let to = "+15550281001";
    let ids: Vec<i64> = [
        "SELECT wa_send_text($1, $2, 'text', reply_to => $3)",
        "SELECT wa_send_media($1, $2, 'image', '1234567890', reply_to => $3)",
        "SELECT wa_send_template($1, $2, 'order_update', 'en_US', reply_to => $3)",
        "SELECT wa_send_interactive($1, $2, '{\"type\": \"button\", \"body\": {\"text\": \"?\"}, \"action\": {\"buttons\": [{\"type\": \"reply\", \"reply\": {\"id\": \"y\", \"title\": \"Yes\"}}]}}', reply_to => $3)",
        "SELECT wa_send_location($1, $2, 1.5, 2.5, reply_to => $3)",
        "SELECT wa_send_contacts($1, $2, $4, $3)",
    ]
    .iter()
    .map(|sql| match sql.contains("$4") {
        true => db.query_one(*sql, &[&ch.name, &to, &quoted, &cards]),
        false => db.query_one(*sql, &[&ch.name, &to, &quoted]),
    })
    .map(|row| row.unwrap().get(0))
    .collect();
    let got = cluster().graph.wait_for(ids.len(), DEADLINE, |r| r.path.contains(&ch.phone_number_id));
    assert_eq!(got.len(), ids.len());
    let kinds: Vec<String> = got.iter().map(|r| r.json()["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["text", "image", "template", "interactive", "location", "contacts"]);
    for r in &got {
        assert_eq!(r.json()["context"], json!({ "message_id": quoted }), "{}", r.body);
    }
    let contacts = got.last().unwrap().json();
    assert_eq!(
        contacts,
        json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "contacts",
                "contacts": cards, "context": { "message_id": quoted },
                "biz_opaque_callback_data": format!("whatsapp_channel:{}", ids[5]) })
    );
    for id in &ids {
        wait_status(*id, "sent");
    }
    let row = db
        .query_one("SELECT body, shared_contacts, reply_to_wamid FROM wa_messages WHERE id = $1", &[&ids[5]])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, serde_json::Value>(1), row.get::<_, String>(2)),
        ("Ann Lee".to_string(), cards.clone(), quoted.clone())
    );

    // A reaction takes no quote (there is no reply_to to give), and an ill-formed card is
    // refused at enqueue, naming the rule, before Meta could refuse it.
    let err = db
        .query_one("SELECT wa_send_contacts($1, $2, '[{\"name\": {\"formatted_name\": \"Bo\"}}]')", &[&ch.name, &to])
        .unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("at least one of first_name"), "{err}");

    // Meta's error on a contacts message is recorded like any other.
    ch.customer_writes("15550281002");
    cluster().graph.fail_next("+15550281002", Fault::meta(131030));
    let refused: i64 =
        db.query_one("SELECT wa_send_contacts($1, '15550281002', $2)", &[&ch.name, &cards]).unwrap().get(0);
    let (_, wamid, code, _) = wait_status(refused, "failed");
    assert_eq!((wamid, code), (None, Some(131030)));
}

#[test]
fn a_scheduled_message_goes_out_at_its_time_without_holding_up_the_customers_other_messages() {
    let ch = cluster().add_channel("schedule");
    ch.customer_writes("15550282001");
    let mut db = cluster().connect();
    let mut listener = Listener::new(&["wa_status"]);
    let row = db
        .query_one(
            "SELECT wa_send_text($1, '15550282001', 'later', send_at => now() + interval '2 seconds') AS id,
                    now() + interval '2 seconds' AS send_at",
            &[&ch.name],
        )
        .unwrap();
    let (later, send_at): (i64, std::time::SystemTime) = (row.get(0), row.get(1));
    assert_eq!(status_of(later).0, "scheduled");
    // Sent now, queued after it: it does not wait behind the scheduled message.
    let now: i64 = db.query_one("SELECT wa_send_text($1, '15550282001', 'now')", &[&ch.name]).unwrap().get(0);
    wait_status(now, "sent");
    assert_eq!(status_of(later).0, "scheduled", "not sent before its send_at");
    notified(&mut listener, later); // released into the queue at its time
    wait_status(later, "sent");
    assert_eq!(bodies_to("+15550282001"), ["now", "later"]);
    let sent_at: std::time::SystemTime =
        db.query_one("SELECT sent_at FROM wa_messages WHERE id = $1", &[&later]).unwrap().get(0);
    assert!(sent_at >= send_at, "sent at {sent_at:?}, before its send_at {send_at:?}");

    // Meta's error on a scheduled message, when it is sent, is recorded like any other.
    ch.customer_writes("15550282002");
    cluster().graph.fail_next("+15550282002", Fault::meta(131030));
    let refused: i64 = db
        .query_one(
            "SELECT wa_send_text($1, '15550282002', 'later too', send_at => now() + interval '1 second')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    let (_, _, code, _) = wait_status(refused, "failed");
    assert_eq!(code, Some(131030));
}

#[test]
fn a_scheduled_message_whose_window_closed_before_its_time_fails_then_saying_so() {
    let ch = cluster().add_channel("schedule-window");
    let mut db = cluster().connect();
    // The customer never wrote: only the channel's switch lets a free-form message be queued.
    db.execute("UPDATE wa_channels SET allow_outside_window = true WHERE name = $1", &[&ch.name]).unwrap();
    let mut listener = Listener::new(&["wa_status"]);
    let id: i64 = db
        .query_one(
            "SELECT wa_send_text($1, '15550283001', 'too late', send_at => now() + interval '1 second')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    db.execute("UPDATE wa_channels SET allow_outside_window = false WHERE name = $1", &[&ch.name]).unwrap();
    notified(&mut listener, id);
    let (status, wamid, _, title) = wait_status(id, "failed");
    assert_eq!((status.as_str(), wamid), ("failed", None));
    assert!(title.as_deref().unwrap_or_default().contains("24-hour customer-service window"), "{title:?}");
    assert!(sends_to("+15550283001").is_empty(), "a message outside the window must not reach Meta");

    // A customer blocked (wa_block, done at Meta) before the message's time: it fails then too.
    ch.customer_writes("15550283002");
    let id: i64 = db
        .query_one(
            "SELECT wa_send_text($1, '15550283002', 'to a blocked one', send_at => now() + interval '3 seconds')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    db.execute("SELECT wa_block($1, ARRAY['+15550283002'])", &[&ch.name]).unwrap();
    let (_, wamid, _, title) = wait_status(id, "failed");
    assert_eq!(wamid, None);
    assert!(title.as_deref().unwrap_or_default().contains("was blocked (wa_block)"), "{title:?}");
    assert!(
        sends_to("+15550283002").iter().all(|r| r.json()["type"] != "text"),
        "a message to a blocked customer must not reach Meta"
    );
}

#[test]
fn a_cancelled_message_is_never_sent_and_the_cancel_is_notified() {
    let ch = cluster().add_channel("cancel");
    ch.customer_writes("15550284001");
    let mut db = cluster().connect();
    let mut listener = Listener::new(&["wa_status"]);
    // A scheduled message, and a queued one (the channel's queue held while it is cancelled).
    let scheduled: i64 = db
        .query_one(
            "SELECT wa_send_text($1, '15550284001', 'scheduled', send_at => now() + interval '1 second')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    db.execute("UPDATE wa_channels SET paused_at = now(), paused_reason = 'cancel test' WHERE name = $1", &[&ch.name])
        .unwrap();
    let queued: i64 = db.query_one("SELECT wa_send_text($1, '15550284001', 'queued')", &[&ch.name]).unwrap().get(0);
    for id in [scheduled, queued] {
        db.execute("SELECT wa_cancel_message($1)", &[&id]).unwrap();
        notified(&mut listener, id);
        assert_eq!(status_of(id).0, "cancelled");
    }
    db.execute("SELECT wa_resume_channel($1)", &[&ch.name]).unwrap();
    let after: i64 = db
        .query_one(
            "SELECT wa_send_text($1, '15550284001', 'after', send_at => now() + interval '1 second')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    wait_status(after, "sent");
    assert_eq!(bodies_to("+15550284001"), ["after"], "only the message not cancelled was sent");
    // A sent message cannot be cancelled.
    let err = db.execute("SELECT wa_cancel_message($1)", &[&after]).unwrap_err();
    assert_eq!(err.code(), Some(&postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{err}");
}

#[test]
fn a_retried_message_is_sent_again_before_the_customers_later_messages() {
    let ch = cluster().add_channel("retry-message");
    ch.customer_writes("15550285001");
    let mut db = cluster().connect();
    let mut listener = Listener::new(&["wa_status"]);
    cluster().graph.fail_next("+15550285001", Fault::meta(131030));
    let first: i64 = db.query_one("SELECT wa_send_text($1, '15550285001', 'first')", &[&ch.name]).unwrap().get(0);
    let (_, _, code, _) = wait_status(first, "failed");
    assert_eq!(code, Some(131030));
    // Two more messages are queued while the channel's queue is held, then the first is
    // retried: it keeps its place, before them.
    db.execute("UPDATE wa_channels SET paused_at = now(), paused_reason = 'retry test' WHERE name = $1", &[&ch.name])
        .unwrap();
    let second: i64 = db.query_one("SELECT wa_send_text($1, '15550285001', 'second')", &[&ch.name]).unwrap().get(0);
    let third: i64 = db.query_one("SELECT wa_send_text($1, '15550285001', 'third')", &[&ch.name]).unwrap().get(0);
    listener.drain("wa_status"); // (the failure's own notification)
    db.execute("SELECT wa_retry_message($1)", &[&first]).unwrap();
    notified(&mut listener, first);
    assert_eq!(status_of(first).0, "queued");
    db.execute("SELECT wa_resume_channel($1)", &[&ch.name]).unwrap();
    for id in [first, second, third] {
        wait_status(id, "sent");
    }
    assert_eq!(
        bodies_to("+15550285001"),
        ["first", "first", "second", "third"],
        "the refused attempt, then the retry in its place"
    );
    let sends = sends_to("+15550285001");
    let (_, wamid, code, _) = status_of(first);
    assert_eq!(
        (wamid, code),
        (sends[1].wamid.clone(), None),
        "the new attempt's wamid, and Meta's error cleared when it was sent"
    );
    // Only a failed message can be retried.
    let err = db.execute("SELECT wa_retry_message($1)", &[&first]).unwrap_err();
    assert_eq!(err.code(), Some(&postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{err}");
}
