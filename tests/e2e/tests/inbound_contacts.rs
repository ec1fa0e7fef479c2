//! Inbound senders: with and without a phone number, and identity changes (a new number, a
//! new business-scoped user id) that keep every message reaching the one contact.

use e2e::wa_sim::payloads::{self, Customer};
use e2e::{cluster, messages_of, value_with};
use serde_json::{Value, json};

#[test]
fn senders_without_a_phone_number_and_identity_changes_update_the_contact() {
    let ch = cluster().add_channel("bsuid");
    // A username user: no wa_id, no from; only the business-scoped user id.
    let username_user = value_with(
        &ch,
        json!([{ "profile": { "name": "Max", "username": "@max" }, "user_id": "US.13491208655302741918" }]),
        json!([{ "from_user_id": "US.13491208655302741918", "id": "wamid.bsuid.1", "timestamp": "100", "type": "text", "text": { "body": "hi" } }]),
    );
    assert_eq!(ch.post_signed(&username_user).status, 200);
    let mut db = cluster().connect();
    let contact = |db: &mut postgres::Client, col: &str, val: &str| -> Option<postgres::Row> {
        db.query_opt(
            &format!("SELECT k.wa_id, k.user_id, k.username, k.profile_name FROM wa_contacts k JOIN wa_channels c ON c.id = k.channel_id WHERE c.name = $1 AND k.{col} = $2"),
            &[&ch.name, &val],
        )
        .unwrap()
    };
    let max = contact(&mut db, "user_id", "US.13491208655302741918").expect("contact keyed by BSUID");
    assert_eq!((max.get::<_, Option<String>>(0), max.get::<_, String>(2)), (None, "@max".into()));

    // A phone user changes number: the same contact now has the new wa_id.
    assert_eq!(
        ch.post_signed(&payloads::text_message(
            &ch.phone_number_id,
            "wamid.bsuid.2",
            "16505558003",
            "Ann",
            "hello",
            100
        ))
        .status,
        200
    );
    let from = Customer { wa_id: "16505558003".into(), name: "Ann".into() };
    let change = payloads::message_value("system", "wamid.bsuid.3", &from, "", 101).unwrap();
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, change)).status, 200);
    assert!(contact(&mut db, "wa_id", "16505558003").is_none());
    let ann = contact(&mut db, "wa_id", "15550009999").expect("contact moved to the new number");
    assert_eq!(ann.get::<_, String>(3), "Ann");
    let system_type: String =
        db.query_one("SELECT system_type FROM wa_messages WHERE wamid = 'wamid.bsuid.3'", &[]).unwrap().get(0);
    assert_eq!(system_type, "user_changed_number");
}

#[test]
fn a_sender_whose_two_ids_belong_to_two_contacts_is_still_stored() {
    let ch = cluster().add_channel("twoids");
    // First known by phone only, then (as a username user) by BSUID only: two contacts.
    let by_phone = value_with(
        &ch,
        json!([{ "profile": { "name": "Zoe" }, "wa_id": "16505558011" }]),
        json!([{ "from": "16505558011", "id": "wamid.twoids.1", "timestamp": "1", "type": "text", "text": { "body": "a" } }]),
    );
    let by_bsuid = value_with(
        &ch,
        json!([{ "profile": { "name": "Zoe" }, "user_id": "US.2001" }]),
        json!([{ "from_user_id": "US.2001", "id": "wamid.twoids.2", "timestamp": "2", "type": "text", "text": { "body": "b" } }]),
    );
    // Then a message that carries both ids: it must not fail on the unique user_id.
    let both = value_with(
        &ch,
        json!([{ "profile": { "name": "Zoe" }, "wa_id": "16505558011", "user_id": "US.2001" }]),
        json!([{ "from": "16505558011", "from_user_id": "US.2001", "id": "wamid.twoids.3", "timestamp": "3", "type": "text", "text": { "body": "c" } }]),
    );
    for p in [&by_phone, &by_bsuid, &both, &both] {
        assert_eq!(ch.post_signed(p).status, 200);
    }
    let stored: Vec<String> = messages_of(&ch, "m.wamid").iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ["wamid.twoids.1", "wamid.twoids.2", "wamid.twoids.3"]);
    let outcome: Vec<String> = cluster()
        .connect()
        .query(
            "SELECT e.outcome FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1",
            &[&ch.name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(outcome.iter().all(|o| o == "stored"), "{outcome:?}");
}

#[test]
fn a_user_changed_user_id_system_message_keeps_the_old_bsuid_reaching_the_contact() {
    let ch = cluster().add_channel("bsuid-system");
    let message = |wamid: &str, uid: &str, m: Value| {
        let mut m = m;
        m["id"] = json!(wamid);
        m["timestamp"] = json!("1767225600");
        m["from_user_id"] = json!(uid);
        value_with(&ch, json!([{ "profile": { "name": "Bo" }, "user_id": uid }]), json!([m]))
    };
    let hello = json!({ "type": "text", "text": { "body": "hello" } });
    assert_eq!(ch.post_signed(&message("wamid.bsuidsys.1", "US.BO.OLD", hello.clone())).status, 200);
    // Meta says, as a system message, that Bo's business-scoped id is now another.
    // (System messages come without a contacts array.)
    let changed = json!({ "type": "system", "id": "wamid.bsuidsys.2", "timestamp": "1767225650", "from_user_id": "US.BO.OLD",
        "system": { "body": "Bo's id changed", "type": "user_changed_user_id", "user_id": "US.BO.NEW" } });
    assert_eq!(ch.post_signed(&value_with(&ch, json!([]), json!([changed]))).status, 200);
    // Later messages under the new id and (redelivered or from an old client) the old one.
    assert_eq!(ch.post_signed(&message("wamid.bsuidsys.3", "US.BO.NEW", hello.clone())).status, 200);
    assert_eq!(ch.post_signed(&message("wamid.bsuidsys.4", "US.BO.OLD", hello)).status, 200);
    let mut db = cluster().connect();
    let contacts: Vec<(i64, Option<String>)> = db
        .query(
            "SELECT DISTINCT k.id, k.user_id FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id
              WHERE m.wamid LIKE 'wamid.bsuidsys.%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(contacts.len(), 1, "the four messages reached {} contacts: {contacts:?}", contacts.len());
    assert_eq!(contacts[0].1.as_deref(), Some("US.BO.NEW"));
    let former: Vec<String> = db
        .query("SELECT user_id FROM wa_contact_former_ids WHERE contact_id = $1", &[&contacts[0].0])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(former, vec!["US.BO.OLD".to_string()]);
}

#[test]
fn a_user_id_update_moves_the_contact_and_both_bsuids_reach_it() {
    let ch = cluster().add_channel("bsuid-update");
    let text = |wamid: &str, contact: Value, from: Value| {
        let mut m = json!({ "id": wamid, "timestamp": "1767225600", "type": "text", "text": { "body": wamid } });
        for (k, v) in from.as_object().unwrap() {
            m[k] = v.clone();
        }
        value_with(&ch, json!([contact]), json!([m]))
    };
    // Known by phone number and BSUID.
    let first = text(
        "wamid.bsuidupd.1",
        json!({ "profile": { "name": "Ana" }, "wa_id": "15550004001", "user_id": "US.OLD" }),
        json!({ "from": "15550004001", "from_user_id": "US.OLD" }),
    );
    assert_eq!(ch.post_signed(&first).status, 200);
    // Meta gives Ana a new BSUID (and parent).
    let mut update = payloads::envelope(
        &ch.phone_number_id,
        json!({ "user_id_update": [{
            "wa_id": "15550004001",
            "user_id": { "previous": "US.OLD", "current": "US.NEW" },
            "parent_user_id": { "previous": "US.P.OLD", "current": "US.P.NEW" },
            "timestamp": "1767225700"
        }] }),
    );
    update["entry"][0]["changes"][0]["field"] = json!("user_id_update");
    assert_eq!(ch.post_signed(&update).status, 200);
    // Then messages under the new BSUID only, and under the old one only.
    for (wamid, uid) in [("wamid.bsuidupd.2", "US.NEW"), ("wamid.bsuidupd.3", "US.OLD")] {
        let m = text(wamid, json!({ "profile": { "name": "Ana" }, "user_id": uid }), json!({ "from_user_id": uid }));
        assert_eq!(ch.post_signed(&m).status, 200);
    }
    let mut db = cluster().connect();
    let contacts: Vec<(i64, Option<String>, Option<String>)> = db
        .query(
            "SELECT DISTINCT k.id, k.user_id, k.parent_user_id FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id
              WHERE m.wamid IN ('wamid.bsuidupd.1', 'wamid.bsuidupd.2', 'wamid.bsuidupd.3')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(contacts.len(), 1, "the three messages reached {} contacts: {contacts:?}", contacts.len());
    assert_eq!((contacts[0].1.as_deref(), contacts[0].2.as_deref()), (Some("US.NEW"), Some("US.P.NEW")));
    let former: Vec<String> = db
        .query("SELECT user_id FROM wa_contact_former_ids WHERE contact_id = $1", &[&contacts[0].0])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(former, vec!["US.OLD".to_string()]);
    // A redelivered update changes nothing.
    assert_eq!(ch.post_signed(&update).status, 200);
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM wa_contacts WHERE channel_id = (SELECT id FROM wa_channels WHERE name = $1)",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}
