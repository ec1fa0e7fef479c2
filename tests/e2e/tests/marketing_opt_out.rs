//! Marketing opt-outs (issue 27): a customer's "Stop promotions" (the user_preferences webhook,
//! or the user_preference_changed system message) and Meta's 131050 on a marketing template
//! mark the contact (wa_contacts.marketing_opt_out_at, notified on wa_contact), wa_send_template
//! then refuses a MARKETING template to them at enqueue with the date and the way back, and only
//! a newer `resume` clears it: an older event, delivered late, changes nothing.

use e2e::wa_sim::payloads::{self, Customer};
use e2e::{Channel, DEADLINE, Listener, cluster, error_of, poll};
use serde_json::json;

/// A channel whose account has a MARKETING and a UTILITY template, synced.
fn channel_with_marketing_template(prefix: &str, waba_id: &str) -> Channel {
    let ch = cluster().add_channel(prefix);
    let mut db = cluster().connect();
    db.execute("UPDATE wa_channels SET waba_id = $1 WHERE name = $2", &[&waba_id, &ch.name]).unwrap();
    cluster().graph.set_templates(
        waba_id,
        json!([
            { "id": "2701", "name": "winter_sale", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
              "components": [{ "type": "BODY", "text": "30% off this week" }] },
            { "id": "2702", "name": "receipt", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
              "components": [{ "type": "BODY", "text": "Thanks for your order" }] }
        ]),
    );
    db.query_one("SELECT wa_sync_templates($1)", &[&ch.name]).unwrap();
    ch
}

fn opted_out_at(ch: &Channel, wa_id: &str) -> Option<Option<std::time::SystemTime>> {
    cluster()
        .connect()
        .query_opt(
            "SELECT k.marketing_opt_out_at FROM wa_contacts k JOIN wa_channels c ON c.id = k.channel_id
              WHERE c.name = $1 AND k.wa_id = $2",
            &[&ch.name, &wa_id],
        )
        .unwrap()
        .map(|r| r.get(0))
}

/// The wa_contact notifications of `ch` not read yet (the other tests' channels notify too).
fn contact_notifications(listener: &mut Listener, ch: &Channel) -> Vec<serde_json::Value> {
    listener.drain("wa_contact").into_iter().filter(|p| p["channel_id"] == ch.id).collect()
}

fn unix(seconds: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds)
}

#[test]
fn a_stop_refuses_marketing_templates_and_only_a_newer_resume_clears_it() {
    let ch = channel_with_marketing_template("optout", "5552701");
    let customer = Customer { wa_id: "15552701001".into(), name: "Sheena Nelson".into() };
    let mut listener = Listener::new(&["wa_contact"]);
    let post = |value| assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, value)).status, 200);

    // Meta's user_preferences webhook: the customer (never seen before) stopped marketing.
    post(payloads::user_preferences_value(&customer, None, "stop", 1739321024));
    assert_eq!(opted_out_at(&ch, &customer.wa_id), Some(Some(unix(1739321024))));
    let contact_id: i64 = cluster()
        .connect()
        .query_one("SELECT id FROM wa_contacts WHERE channel_id = $1 AND wa_id = $2", &[&ch.id, &customer.wa_id])
        .unwrap()
        .get(0);
    let notified = contact_notifications(&mut listener, &ch);
    assert_eq!(notified.len(), 1, "{notified:?}");
    assert_eq!(notified[0]["id"], contact_id);

    // Refused at enqueue, with the date and the way back; a utility template still goes.
    let (message, hint) = error_of("SELECT wa_send_template($1, '+15552701001', 'winter_sale', 'en_US')", &[&ch.name]);
    assert!(message.contains("stopped marketing messages from this business on 2025-02-12 00:43 UTC"), "{message}");
    assert!(hint.contains("resuming marketing messages"), "{hint}");
    let mut db = cluster().connect();
    db.query_one("SELECT wa_send_template($1, '15552701001', 'receipt', 'en_US')", &[&ch.name]).unwrap();

    // A resume from before the stop (delivered late) changes nothing and notifies nothing.
    post(payloads::user_preferences_value(&customer, None, "resume", 1739320000));
    assert_eq!(opted_out_at(&ch, &customer.wa_id), Some(Some(unix(1739321024))));
    assert!(contact_notifications(&mut listener, &ch).is_empty());

    // A newer resume, as the system message user_preference_changed: cleared, and notified.
    post(payloads::preference_system_value("wamid.optout.resume", &customer, "resume", 1739321084));
    assert_eq!(opted_out_at(&ch, &customer.wa_id), Some(None));
    assert_eq!(contact_notifications(&mut listener, &ch).len(), 1);
    let body: String =
        db.query_one("SELECT body FROM wa_messages WHERE wamid = 'wamid.optout.resume'", &[]).unwrap().get(0);
    assert_eq!(body, "Sheena Nelson resumed marketing messages");
    db.query_one("SELECT wa_send_template($1, '15552701001', 'winter_sale', 'en_US')", &[&ch.name]).unwrap();

    // The stop delivered again (older than the resume): still cleared.
    post(payloads::user_preferences_value(&customer, None, "stop", 1739321024));
    assert_eq!(opted_out_at(&ch, &customer.wa_id), Some(None));
}

#[test]
fn a_stop_by_bsuid_refuses_the_customer_addressed_by_it() {
    let ch = channel_with_marketing_template("optout-bsuid", "5552702");
    let customer = Customer { wa_id: "15552702001".into(), name: "Max".into() };
    let value = payloads::user_preferences_value(&customer, Some("US.27020000000000000001"), "stop", 1739321024);
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, value)).status, 200);
    let (message, _) =
        error_of("SELECT wa_send_template($1, 'US.27020000000000000001', 'winter_sale', 'en_US')", &[&ch.name]);
    assert!(message.contains("stopped marketing messages"), "{message}");
}

#[test]
fn metas_131050_on_a_delivery_marks_the_customer_with_a_hint() {
    let ch = channel_with_marketing_template("optout-131050", "5552703");
    let mut db = cluster().connect();
    let id: i64 =
        db.query_one("SELECT wa_send_template($1, '15552703001', 'winter_sale', 'en_US')", &[&ch.name]).unwrap().get(0);
    let wamid: String = poll(|| {
        db.query_one(
            "SELECT wamid FROM wa_messages WHERE id = $1 AND status <> 'queued' AND status <> 'sending'",
            &[&id],
        )
        .ok()
        .and_then(|r| r.get(0))
    })
    .unwrap_or_else(|| panic!("message {id} was not sent within {DEADLINE:?}"));
    let mut listener = Listener::new(&["wa_contact"]);
    // Meta refuses it later, asynchronously, as a failed status.
    let failed = payloads::failed_status_value(&wamid, "15552703001", 131050, 1765000000);
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, failed)).status, 200);
    let row = db.query_one("SELECT status, error_code, error_hint FROM wa_messages WHERE id = $1", &[&id]).unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, Option<i32>>(1)), ("failed".into(), Some(131050)));
    let hint: String = row.get(2);
    assert!(hint.contains("wa_send_template refuses marketing templates"), "{hint}");
    assert!(opted_out_at(&ch, "15552703001").is_some_and(|at| at.is_some()), "the contact is marked");
    assert_eq!(contact_notifications(&mut listener, &ch).len(), 1);
    let (message, _) = error_of("SELECT wa_send_template($1, '15552703001', 'winter_sale', 'en_US')", &[&ch.name]);
    assert!(message.contains("stopped marketing messages"), "{message}");
}
