//! Groups (Meta's Groups API): group webhooks keep wa_groups current, a message written in a
//! group lands in the group's conversation, a reply goes to the group, group statuses move it
//! forward per participant, and what groups do not take is refused at enqueue.

use e2e::wa_sim::payloads::{self, Customer};
use e2e::{Channel, DEADLINE, Listener, cluster, error_of, poll};
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A fresh group id, shaped like Meta's (base64, ~55 characters).
fn group_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQy{:06}ZD", N.fetch_add(1, Ordering::Relaxed))
}

fn customer(wa_id: &str, name: &str) -> Customer {
    Customer { wa_id: wa_id.into(), name: name.into() }
}

fn create_group(ch: &Channel, group: &str, subject: &str) {
    let created = payloads::group_lifecycle_value("group_create", group, subject, now() - 60, false);
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, created)).status, 200);
}

fn group_writes(ch: &Channel, group: &str, from: &Customer, wamid: &str, text: &str) {
    let value = payloads::group_message_value("text", wamid, group, from, text, now()).unwrap();
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, value)).status, 200);
}

#[test]
fn a_group_message_lands_in_the_group_conversation_and_a_reply_reaches_the_group() {
    let ch = cluster().add_channel("group");
    cluster().enable_status_webhooks(&ch);
    let group = group_id();
    let mut listener = Listener::new(&["wa_group", "wa_message", "wa_status"]);
    create_group(&ch, &group, "Launch team");
    let mut db = cluster().connect();
    listener.next_matching(|c, p| c == "wa_group" && p["channel_id"] == ch.id).expect("a wa_group notification");
    let created: (String, Option<String>) = db
        .query_one(
            "SELECT status, last_event ->> 'type' FROM wa_groups WHERE channel_id = $1 AND group_id = $2",
            &[&ch.id, &group],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(created, ("active".into(), Some("group_create".into())));

    let tiago = customer("15550004001", "Tiago");
    group_writes(&ch, &group, &tiago, "wamid.group.in.1", "What does everyone think?");
    let row = db
        .query_one(
            "SELECT m.id, m.group_id, k.wa_id, k.profile_name, k.last_inbound_at IS NULL, m.contact_id
               FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id WHERE m.wamid = 'wamid.group.in.1'",
            &[],
        )
        .unwrap();
    let in_id: i64 = row.get(0);
    let got: (Option<String>, Option<String>, Option<String>, bool) = (row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(
        got,
        (Some(group.clone()), Some("15550004001".into()), Some("Tiago".into()), true),
        "the writer is the contact; their own window stays closed"
    );
    let (_, note) = listener.next_matching(|c, p| c == "wa_message" && p["id"] == in_id).unwrap();
    let writer: i64 = row.get(5);
    assert_eq!(note, json!({"id": in_id, "channel_id": ch.id, "contact_id": writer}), "the writer is known: notified");

    // One conversation, the group's: none for the participant.
    let rows = db
        .query(
            "SELECT group_id, contact_id, group_subject, unread_count, last_body, window_open
               FROM wa_conversations WHERE channel = $1",
            &[&ch.name],
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "a group message must not open the writer's private conversation");
    let conv: (Option<String>, Option<i64>, Option<String>, i32, Option<String>, bool) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2), rows[0].get(3), rows[0].get(4), rows[0].get(5));
    assert_eq!(
        conv,
        (Some(group.clone()), None, Some("Launch team".into()), 1, Some("What does everyone think?".into()), true)
    );
    let participants: Vec<String> =
        db.query_one("SELECT participants FROM wa_groups WHERE group_id = $1", &[&group]).unwrap().get(0);
    assert_eq!(participants, ["15550004001"], "who writes is a participant");

    // The same person writing 1:1 is another conversation.
    ch.customer_writes("15550004001");
    let n: i64 = db.query_one("SELECT count(*) FROM wa_conversations WHERE channel = $1", &[&ch.name]).unwrap().get(0);
    assert_eq!(n, 2);

    // A reply to the group goes to the group, as Meta's Groups API takes it.
    cluster().graph.set_group_participants(&group, &["15550004001", "15550004002"]);
    let out_id: i64 = db.query_one("SELECT wa_send_text($1, $2, 'Thanks all')", &[&ch.name, &group]).unwrap().get(0);
    let sent = cluster()
        .graph
        .wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id) && r.body.contains("Thanks all"));
    assert_eq!(
        sent[0].json(),
        json!({"messaging_product": "whatsapp", "recipient_type": "group", "to": group, "type": "text",
               "text": {"body": "Thanks all", "preview_url": false},
               "biz_opaque_callback_data": format!("whatsapp_channel:{out_id}")})
    );
    let (recipient, contact): (Option<String>, Option<i64>) = db
        .query_one("SELECT recipient, contact_id FROM wa_messages WHERE id = $1", &[&out_id])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((recipient.as_deref(), contact), (Some(group.as_str()), None));

    // The simulator's group statuses: sent, then delivered and read once per participant. The
    // first participant's read moves the message to read; each participant's status is kept.
    let status = poll(|| {
        let s: String = db.query_one("SELECT status FROM wa_messages WHERE id = $1", &[&out_id]).unwrap().get(0);
        (s == "read").then_some(s)
    });
    assert_eq!(status.as_deref(), Some("read"));
    let kept = poll(|| {
        let rows = db
            .query(
                "SELECT s.status, s.participant_id FROM wa_message_statuses s JOIN wa_messages m ON m.wamid = s.wamid
                  WHERE m.id = $1 ORDER BY 1, 2",
                &[&out_id],
            )
            .unwrap();
        let kept: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        (kept.len() == 5).then_some(kept)
    })
    .expect("five statuses");
    let p = |s: &str| Some(s.to_string());
    assert_eq!(
        kept,
        [
            ("delivered".into(), p("15550004001")),
            ("delivered".into(), p("15550004002")),
            ("read".into(), p("15550004001")),
            ("read".into(), p("15550004002")),
            ("sent".into(), None),
        ]
    );
    let (unread, last_direction): (i32, String) = db
        .query_one("SELECT unread_count, last_direction FROM wa_conversations WHERE group_id = $1", &[&group])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((unread, last_direction.as_str()), (0, "outbound"), "writing to the group clears its unread count");

    // The group's history is its messages, in and out; the participant's is their 1:1 ones.
    let history: Vec<i64> = db
        .query("SELECT id FROM wa_messages WHERE channel_id = (SELECT id FROM wa_channels WHERE name = $1) AND group_id = $2 ORDER BY id DESC LIMIT 50",
               &[&ch.name, &group])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(history, [out_id, in_id]);
}

#[test]
fn what_the_groups_api_does_not_take_is_refused_at_enqueue() {
    let ch = cluster().add_channel("group-refusals");
    let group = group_id();
    create_group(&ch, &group, "Refusals");
    let writer = customer("15550004101", "Ann");

    // Nobody wrote yet: free-form is refused like a closed window; a template is not.
    let (message, hint) = error_of("SELECT wa_send_text($1, $2, 'hello')", &[&ch.name, &group]);
    assert!(message.contains(&format!("window with group {group} is closed: nobody has written in it")), "{message}");
    assert!(hint.contains("wa_send_template"), "{hint}");
    cluster().connect().query_one("SELECT wa_send_template($1, $2, 'launch', 'en_US')", &[&ch.name, &group]).unwrap();

    group_writes(&ch, &group, &writer, "wamid.group.refuse.1", "hi");
    let buttons = json!({"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}});
    let (message, hint) = error_of("SELECT wa_send_interactive($1, $2, $3)", &[&ch.name, &group, &buttons]);
    assert!(message.contains("interactive messages cannot be sent to group"), "{message}");
    assert!(hint.contains("text, media") && hint.contains("templates"), "{hint}");
    let (message, _) = error_of("SELECT wa_send_location($1, $2, 1.0, 2.0)", &[&ch.name, &group]);
    assert!(message.contains("locations cannot be sent to group"), "{message}");
    for sql in
        ["SELECT wa_send_reaction($1, 'wamid.group.refuse.1', '👍')", "SELECT wa_mark_read($1, 'wamid.group.refuse.1')"]
    {
        let (message, hint) = error_of(sql, &[&ch.name]);
        assert!(message.contains("does not support reactions or read receipts in groups"), "{sql}: {message}");
        assert!(hint.contains("unread count clears when you write"), "{hint}");
    }
    // Authentication templates cannot go to groups (Meta: "Auth" is not supported).
    let mut db = cluster().connect();
    db.execute(
        "INSERT INTO wa_templates (channel_id, name, language, status, category, components)
         SELECT id, 'login_code', 'en_US', 'APPROVED', 'AUTHENTICATION', '[{\"type\": \"BODY\", \"text\": \"Your code\"}]'
           FROM wa_channels WHERE name = $1",
        &[&ch.name],
    )
    .unwrap();
    let (message, _) = error_of("SELECT wa_send_template($1, $2, 'login_code', 'en_US')", &[&ch.name, &group]);
    assert!(message.contains("authentication template: Meta's Groups API does not send those to groups"), "{message}");

    // A group id this channel does not know, and a suspended group.
    let unknown = group_id();
    let (message, hint) = error_of("SELECT wa_send_text($1, $2, 'hello')", &[&ch.name, &unknown]);
    assert!(message.contains(&format!("{unknown} is not a group of channel")), "{message}");
    assert!(hint.contains("group_lifecycle_update"), "{hint}");
    let suspend = payloads::group_suspension_value("group_suspend", &group, now());
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, suspend)).status, 200);
    let (message, hint) = error_of("SELECT wa_send_text($1, $2, 'hello')", &[&ch.name, &group]);
    assert!(message.contains("is suspended"), "{message}");
    assert!(hint.contains("group_suspend_cleared"), "{hint}");
    let cleared = payloads::group_suspension_value("group_suspend_cleared", &group, now() + 1);
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, cleared)).status, 200);
    db.query_one("SELECT wa_send_text($1, $2, 'back again')", &[&ch.name, &group]).unwrap();
}

#[test]
fn group_webhooks_keep_the_group_current_whatever_their_order() {
    let ch = cluster().add_channel("group-events");
    let group = group_id();
    let mut listener = Listener::new(&["wa_group"]);
    let mut db = cluster().connect();
    // Posts one event, then says which changes were notified meanwhile: a notification names
    // only the channel, and the group's row names the event that last changed it.
    let mut post = |value: serde_json::Value| -> Vec<String> {
        assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, value)).status, 200);
        let notes = listener.drain("wa_group").into_iter().filter(|p| *p == json!({"channel_id": ch.id})).count();
        let last: String = db
            .query_one(
                "SELECT last_event ->> 'type' FROM wa_groups WHERE channel_id = $1 AND group_id = $2",
                &[&ch.id, &group],
            )
            .unwrap()
            .get(0);
        vec![last; notes]
    };
    let t = now();
    let mut kinds = Vec::new();
    // Participants join before the group's creation webhook arrives (webhooks are not ordered).
    kinds.extend(post(payloads::group_participants_value(
        "group_participants_add",
        &group,
        &["15550004201", "15550004202"],
        t,
    )));
    kinds.extend(post(payloads::group_lifecycle_value("group_create", &group, "Team", t - 10, false)));
    kinds.extend(post(payloads::group_participants_value(
        "group_participants_remove",
        &group,
        &["15550004202"],
        t + 1,
    )));
    kinds.extend(post(payloads::group_settings_value(&group, "Team v2", "Where we plan", t + 2)));
    let row = cluster()
        .connect()
        .query_one(
            "SELECT subject, description, invite_link IS NOT NULL, status, participants FROM wa_groups WHERE group_id = $1",
            &[&group],
        )
        .unwrap();
    let got: (Option<String>, Option<String>, bool, String, Vec<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(
        got,
        (Some("Team v2".into()), Some("Where we plan".into()), true, "active".into(), vec!["15550004201".into()])
    );

    // Deleted; a late suspension-cleared from before the deletion does not bring it back.
    kinds.extend(post(payloads::group_lifecycle_value("group_delete", &group, "", t + 10, false)));
    kinds.extend(post(payloads::group_suspension_value("group_suspend_cleared", &group, t + 5)));
    let status: String =
        cluster().connect().query_one("SELECT status FROM wa_groups WHERE group_id = $1", &[&group]).unwrap().get(0);
    assert_eq!(status, "deleted");
    let (message, _) = error_of("SELECT wa_send_template($1, $2, 'launch', 'en_US')", &[&ch.name, &group]);
    assert!(message.contains("is deleted"), "{message}");

    // Each change was notified once; an event that changes nothing (a late one, a redelivered
    // one) is not written or notified.
    assert_eq!(
        kinds,
        [
            "group_participants_add",
            "group_create",
            "group_participants_remove",
            "group_settings_update",
            "group_delete",
        ],
        "the late suspension-cleared changed nothing"
    );
    assert_eq!(post(payloads::group_lifecycle_value("group_delete", &group, "", t + 10, false)), Vec::<String>::new());
    assert_eq!(
        post(payloads::group_settings_value(&group, "Team v3", "Where we plan", t + 11)),
        ["group_settings_update"]
    );

    // A group Meta could not create, and a group deleted from the table takes its conversation.
    let failed = group_id();
    let create_failed = payloads::group_lifecycle_value("group_create", &failed, "Nope", t, true);
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, create_failed)).status, 200);
    let status: String = db.query_one("SELECT status FROM wa_groups WHERE group_id = $1", &[&failed]).unwrap().get(0);
    assert_eq!(status, "create_failed");
    let live = group_id();
    group_writes(&ch, &live, &customer("15550004203", "Bo"), "wamid.group.events.1", "hi");
    let known: i64 = db.query_one("SELECT count(*) FROM wa_groups WHERE group_id = $1", &[&live]).unwrap().get(0);
    assert_eq!(known, 1, "a group first seen in a message is known from then on");
    db.execute("DELETE FROM wa_groups WHERE group_id = $1", &[&live]).unwrap();
    let left: i64 =
        db.query_one("SELECT count(*) FROM wa_conversation_state WHERE group_id = $1", &[&live]).unwrap().get(0);
    assert_eq!(left, 0);
}
