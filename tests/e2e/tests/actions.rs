//! The action outbox (issue 28): Graph API calls that are not messages, queued in the caller's
//! transaction, performed by the delivery worker after COMMIT, retried like messages, their
//! results recorded and notified on wa_action. Block and unblock, call actions, the call
//! permission request (a message), template creation and deletion: each through wa-sim, with
//! the request's shape, a success and one of Meta's errors.

use e2e::wa_sim::graph::{Fault, Received};
use e2e::wa_sim::payloads;
use e2e::{Channel, Cluster, DEADLINE, Listener, cluster, error_of, poll};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The action's (status, attempts, result, error_code), once it has ended (done or failed).
fn ended(db: &mut postgres::Client, id: i64) -> (String, i32, Option<Value>, Option<i32>) {
    poll(|| {
        let r =
            db.query_one("SELECT status, attempts, result, error_code FROM wa_actions WHERE id = $1", &[&id]).unwrap();
        let status: String = r.get(0);
        matches!(status.as_str(), "done" | "failed").then(|| (status, r.get(1), r.get(2), r.get(3)))
    })
    .unwrap_or_else(|| panic!("action {id} did not end within {DEADLINE:?}"))
}

/// The requests wa-sim received on `endpoint` of `owner` (a phone number id or a WABA id).
fn requests_to(owner: &str, endpoint: &str) -> Vec<Received> {
    cluster()
        .graph
        .received()
        .into_iter()
        .filter(|r| r.path.contains(&format!("/{owner}/")) && r.endpoint() == endpoint)
        .collect()
}

fn blocked_at_set(ch: &Channel, wa_id: &str) -> bool {
    cluster()
        .connect()
        .query_one(
            "SELECT blocked_at IS NOT NULL FROM wa_contacts WHERE channel_id = $1 AND wa_id = $2",
            &[&ch.id, &wa_id],
        )
        .unwrap()
        .get(0)
}

#[test]
fn block_goes_out_after_commit_refuses_sends_and_unblock_undoes_it() {
    let ch = cluster().add_channel("block");
    ch.customer_writes("15557770001");
    let mut listener = Listener::new(&["wa_action"]);
    let mut db = cluster().connect();
    // Queued in the caller's transaction: nothing reaches Meta before COMMIT.
    let mut tx = db.transaction().unwrap();
    let id: i64 = tx.query_one("SELECT wa_block($1, ARRAY['+1 555 777 0001'])", &[&ch.name]).unwrap().get(0);
    assert!(requests_to(&ch.phone_number_id, "block_users").is_empty(), "Meta was called inside the transaction");
    tx.commit().unwrap();
    let (_, note) = listener.next_matching(|_, p| p["id"] == id).expect("wa_action notified");
    assert_eq!(note, json!({ "id": id, "channel_id": ch.id }));
    let (status, attempts, result, code) = ended(&mut db, id);
    assert_eq!((status.as_str(), attempts, code), ("done", 1, None));
    assert_eq!(result.unwrap()["added_users"][0]["wa_id"], "15557770001");
    let sent = requests_to(&ch.phone_number_id, "block_users");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].json(), json!({ "messaging_product": "whatsapp", "block_users": [{ "user": "+15557770001" }] }));
    assert!(blocked_at_set(&ch, "15557770001"));
    // A send to them is refused at enqueue, saying why and how to undo it.
    let (msg, hint) = error_of("SELECT wa_send_text($1, '+15557770001', 'hi')", &[&ch.name]);
    assert!(msg.contains("+15557770001 is blocked on channel"), "{msg}");
    assert!(hint.contains("wa_unblock("), "{hint}");
    // Unblock: the same body, DELETE; the contact can be written to again.
    let id: i64 = db.query_one("SELECT wa_unblock($1, ARRAY['15557770001'])", &[&ch.name]).unwrap().get(0);
    assert_eq!(ended(&mut db, id).0, "done");
    let sent = requests_to(&ch.phone_number_id, "block_users");
    assert_eq!((sent.len(), sent[1].method.as_str()), (2, "DELETE"));
    assert_eq!(sent[1].json()["block_users"], json!([{ "user": "+15557770001" }]));
    assert!(!blocked_at_set(&ch, "15557770001"));
    db.execute("SELECT wa_send_text($1, '+15557770001', 'hi again')", &[&ch.name]).unwrap();
}

#[test]
fn block_records_metas_errors_per_user() {
    let ch = cluster().add_channel("block-partial");
    ch.customer_writes("15557770011");
    cluster().graph.fail_next(
        "+15557770012",
        Fault::Error {
            http_status: 400,
            code: 139102,
            message: "(#139102) Block user failed: no message in 24 hours".into(),
        },
    );
    let mut db = cluster().connect();
    let id: i64 =
        db.query_one("SELECT wa_block($1, ARRAY['+15557770011', '+15557770012'])", &[&ch.name]).unwrap().get(0);
    let (status, attempts, result, code) = ended(&mut db, id);
    // Done, once (a per-user failure is not retried), with Meta's summary and each user's error.
    assert_eq!((status.as_str(), attempts, code), ("done", 1, Some(139100)));
    let result = result.unwrap();
    assert_eq!(result["added_users"][0]["input"], "+15557770011");
    assert_eq!(result["failed_users"][0]["input"], "+15557770012");
    assert_eq!(result["failed_users"][0]["errors"][0]["code"], 139102);
    assert!(blocked_at_set(&ch, "15557770011"));
    let other: Option<bool> = db
        .query_opt(
            "SELECT blocked_at IS NOT NULL FROM wa_contacts WHERE channel_id = $1 AND wa_id = '15557770012'",
            &[&ch.id],
        )
        .unwrap()
        .map(|r| r.get(0));
    assert_ne!(other, Some(true));
    // What the caller passes is checked before anything is queued.
    let (msg, _) = error_of("SELECT wa_block($1, ARRAY[]::text[])", &[&ch.name]);
    assert!(msg.contains("no recipients"), "{msg}");
}

/// Posts a call event of `ch` (the connect event with an SDP offer).
fn post_call(ch: &Channel, call_id: &str, event: &str, at: i64) {
    let mut value = payloads::call_value(call_id, "15557770021", event, None, None, at);
    if event == "connect" {
        value["calls"][0]["session"] = json!({ "sdp_type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" });
    }
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, value)).status, 200);
}

#[test]
fn call_actions_reach_meta_in_order_and_every_call_event_is_kept() {
    let ch = cluster().add_channel("call-actions");
    post_call(&ch, "wacid.act1", "connect", 1_767_225_600);
    let mut db = cluster().connect();
    // pre_accept and accept queued together go out in that order, each with the SDP answer.
    let mut tx = db.transaction().unwrap();
    let pre: i64 = tx
        .query_one("SELECT wa_call_action($1, 'wacid.act1', 'pre_accept', 'v=0 answer')", &[&ch.name])
        .unwrap()
        .get(0);
    let accept: i64 =
        tx.query_one("SELECT wa_call_action($1, 'wacid.act1', 'accept', 'v=0 answer')", &[&ch.name]).unwrap().get(0);
    tx.commit().unwrap();
    assert_eq!(ended(&mut db, pre).0, "done");
    assert_eq!(ended(&mut db, accept).0, "done");
    let sent: Vec<Value> = requests_to(&ch.phone_number_id, "calls").iter().map(Received::json).collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["action"], "pre_accept");
    assert_eq!(
        sent[1],
        json!({ "messaging_product": "whatsapp", "call_id": "wacid.act1", "action": "accept",
                "session": { "sdp_type": "answer", "sdp": "v=0 answer" } })
    );
    // Meta refuses a terminate (a call that is over): failed for good, with its code and a row.
    cluster().graph.fail_next("wacid.act1", Fault::meta(100));
    let end: i64 = db.query_one("SELECT wa_call_action($1, 'wacid.act1', 'terminate')", &[&ch.name]).unwrap().get(0);
    let (status, attempts, _, code) = ended(&mut db, end);
    assert_eq!((status.as_str(), attempts, code), ("failed", 1, Some(100)));
    assert_eq!(requests_to(&ch.phone_number_id, "calls")[2].json()["action"], "terminate");
    // A transient error is retried, as a message's is.
    cluster().graph.fail_next("wacid.act1", Fault::meta(2));
    let reject: i64 = db.query_one("SELECT wa_call_action($1, 'wacid.act1', 'reject')", &[&ch.name]).unwrap().get(0);
    let (status, attempts, _, _) = ended(&mut db, reject);
    assert_eq!((status.as_str(), attempts), ("done", 2));
    // Refused before anything is queued: an unknown call, an accept without SDP.
    let (msg, hint) = error_of("SELECT wa_call_action($1, 'wacid.nope', 'reject')", &[&ch.name]);
    assert!(msg.contains("is not a call of channel") && hint.contains("wa_calls"), "{msg} / {hint}");
    let (msg, hint) = error_of("SELECT wa_call_action($1, 'wacid.act1', 'accept')", &[&ch.name]);
    assert!(msg.contains("needs the SDP answer") && hint.contains("wa_call_events"), "{msg} / {hint}");
    // Every event of the call is kept (the connect's SDP offer too), once; wa_calls has one row.
    post_call(&ch, "wacid.act1", "terminate", 1_767_225_700);
    post_call(&ch, "wacid.act1", "terminate", 1_767_225_700); // redelivered
    let events: Vec<(String, Option<String>)> = db
        .query(
            "SELECT event, payload -> 'session' ->> 'sdp' FROM wa_call_events WHERE channel_id = $1 AND call_id = 'wacid.act1' ORDER BY id",
            &[&ch.id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        events,
        vec![("connect".into(), Some("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n".into())), ("terminate".into(), None)]
    );
    let calls: i64 = db.query_one("SELECT count(*) FROM wa_calls WHERE channel_id = $1", &[&ch.id]).unwrap().get(0);
    assert_eq!(calls, 1);
}

#[test]
fn call_permission_request_is_a_message_in_the_window() {
    let ch = cluster().add_channel("call-permission");
    ch.customer_writes("15557770031");
    let mut db = cluster().connect();
    let id: i64 = db
        .query_one(
            "SELECT wa_request_call_permission($1, '+15557770031', 'May we call you about your order?')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    let got =
        cluster().graph.wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id) && r.endpoint() == "messages");
    let body = got[0].json();
    assert_eq!(body["type"], "interactive");
    assert_eq!(
        body["interactive"],
        json!({ "type": "call_permission_request", "action": { "name": "call_permission_request" },
                "body": { "text": "May we call you about your order?" } })
    );
    let sent = poll(|| {
        let s: String = db.query_one("SELECT status FROM wa_messages WHERE id = $1", &[&id]).unwrap().get(0);
        (s != "queued" && s != "sending").then_some(s)
    });
    assert_eq!(sent.as_deref(), Some("sent"));
    // Meta's error (not in the allowed list of a test number): the message fails with it.
    cluster().graph.fail_next("+15557770031", Fault::meta(131030));
    let id: i64 = db.query_one("SELECT wa_request_call_permission($1, '+15557770031')", &[&ch.name]).unwrap().get(0);
    let failed = poll(|| {
        let r = db.query_one("SELECT status, error_code FROM wa_messages WHERE id = $1", &[&id]).unwrap();
        (r.get::<_, String>(0) == "failed").then(|| r.get::<_, Option<i32>>(1))
    });
    assert_eq!(failed, Some(Some(131030)));
    // Outside the customer's window it is refused at enqueue, as any free-form message is.
    let (msg, _) = error_of("SELECT wa_request_call_permission($1, '+15557770039')", &[&ch.name]);
    assert!(msg.contains("24-hour customer-service window"), "{msg}");
}

#[test]
fn templates_are_created_pending_and_deleted() {
    let ch = cluster().add_channel("tpl-actions");
    let waba = "5559001";
    let mut db = cluster().connect();
    let (msg, hint) = error_of(
        "SELECT wa_create_template($1, 'order_note', 'en_US', 'UTILITY', '[{\"type\":\"BODY\",\"text\":\"Hi\"}]')",
        &[&ch.name],
    );
    assert!(msg.contains("has no WhatsApp Business Account id") && hint.contains("waba_id"), "{msg} / {hint}");
    db.execute("UPDATE wa_channels SET waba_id = $1 WHERE id = $2", &[&waba, &ch.id]).unwrap();
    let components =
        json!([{ "type": "BODY", "text": "Your order {{1}} has shipped.", "example": { "body_text": [["#42"]] } }]);
    let id: i64 = db
        .query_one("SELECT wa_create_template($1, 'order_note', 'en_US', 'utility', $2)", &[&ch.name, &components])
        .unwrap()
        .get(0);
    let (status, _, result, _) = ended(&mut db, id);
    assert_eq!(status, "done");
    let sent = requests_to(waba, "message_templates");
    assert_eq!(sent[0].method, "POST");
    assert_eq!(
        sent[0].json(),
        json!({ "name": "order_note", "language": "en_US", "category": "UTILITY", "components": components })
    );
    let row = db
        .query_one("SELECT status, template_id, category, components FROM wa_templates WHERE channel_id = $1 AND name = 'order_note'", &[&ch.id])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "PENDING");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), result.unwrap()["id"].as_str());
    assert_eq!(
        (row.get::<_, Option<String>>(2).as_deref(), row.get::<_, Value>(3)),
        (Some("UTILITY"), components.clone())
    );
    // Meta's error: the same name and language again.
    let again: i64 = db
        .query_one("SELECT wa_create_template($1, 'order_note', 'en_US', 'UTILITY', $2)", &[&ch.name, &components])
        .unwrap()
        .get(0);
    let (status, _, _, code) = ended(&mut db, again);
    assert_eq!((status.as_str(), code), ("failed", Some(100)));
    // Deleted by name: DELETE ...?name=, and its rows leave wa_templates.
    let del: i64 = db.query_one("SELECT wa_delete_template($1, 'order_note')", &[&ch.name]).unwrap().get(0);
    assert_eq!(ended(&mut db, del).0, "done");
    let sent = requests_to(waba, "message_templates");
    assert_eq!(
        (sent[2].method.as_str(), sent[2].path.ends_with("/message_templates?name=order_note")),
        ("DELETE", true)
    );
    let left: i64 = db.query_one("SELECT count(*) FROM wa_templates WHERE channel_id = $1", &[&ch.id]).unwrap().get(0);
    assert_eq!(left, 0);
    // Meta's error for a name it does not have.
    let del: i64 = db.query_one("SELECT wa_delete_template($1, 'no_such')", &[&ch.name]).unwrap().get(0);
    let (status, _, _, code) = ended(&mut db, del);
    assert_eq!((status.as_str(), code), ("failed", Some(100)));
    // Checked before queueing: a category Meta has not.
    let (msg, _) = error_of("SELECT wa_create_template($1, 'x', 'en_US', 'PROMO', '[{}]')", &[&ch.name]);
    assert!(msg.contains("is not a template category"), "{msg}");
}

#[test]
fn an_action_in_flight_at_a_crash_is_performed_once_after_the_restart() {
    // Meta answers after 3 s: the action is in flight (claimed, 'sending') when the server dies.
    let cluster = Cluster::private(Duration::from_secs(3));
    let ch = cluster.add_channel("crash-action");
    let mut db = cluster.connect();
    let arrivals = cluster.graph.arrivals();
    let id: i64 = db.query_one("SELECT wa_block($1, ARRAY['+15557770041'])", &[&ch.name]).unwrap().get(0);
    let sending = poll(|| {
        let s: String = db.query_one("SELECT status FROM wa_actions WHERE id = $1", &[&id]).unwrap().get(0);
        (s == "sending").then_some(())
    });
    assert!(sending.is_some(), "the action was never claimed");
    // Meta has the request (and takes 3 s to answer it) before the crash: the requests that
    // arrive after this instant are the restarted worker's. (Taken after the restart, the
    // instant could come after the restarted worker's request, which is sent at once.)
    let reached = poll(|| (cluster.graph.arrivals() > arrivals).then_some(()));
    assert!(reached.is_some(), "the claimed action never reached Meta");
    let crashed = Instant::now();
    cluster.crash_and_restart();
    let mut db = cluster.connect_when_up();
    let done = poll(|| {
        let r = db.query_one("SELECT status, attempts FROM wa_actions WHERE id = $1", &[&id]).unwrap();
        (r.get::<_, String>(0) == "done").then(|| r.get::<_, i32>(1))
    });
    assert_eq!(done, Some(2), "the interrupted action was not performed again after the restart");
    // Once after the restart (the request that was in flight may have reached Meta too: a
    // block is idempotent there).
    let after: Vec<Received> =
        cluster.graph.received().into_iter().filter(|r| r.at > crashed && r.endpoint() == "block_users").collect();
    assert_eq!(after.len(), 1);
    let blocked: bool = db
        .query_one(
            "SELECT blocked_at IS NOT NULL FROM wa_contacts WHERE channel_id = $1 AND wa_id = '15557770041'",
            &[&ch.id],
        )
        .unwrap()
        .get(0);
    assert!(blocked);
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A group created through the outbox: Meta answers a request id, and the group_create webhook
/// that carries it brings the group into wa_groups, found by that request id. Meta's error for
/// a creation it refuses fails the action with its code and hint.
#[test]
fn a_group_is_created_and_found_by_its_request_id() {
    let ch = cluster().add_channel("grp-create");
    let mut db = cluster().connect();
    let id: i64 = db
        .query_one(
            "SELECT wa_create_group($1, '  Launch team ', 'For the launch', join_approval_required => true)",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    let (status, attempts, result, _) = ended(&mut db, id);
    assert_eq!((status.as_str(), attempts), ("done", 1));
    let request_id = result.unwrap()["request_id"].as_str().expect("Meta's request id").to_string();
    let sent = requests_to(&ch.phone_number_id, "groups");
    assert_eq!((sent.len(), sent[0].method.as_str()), (1, "POST"));
    assert_eq!(
        sent[0].json(),
        json!({ "messaging_product": "whatsapp", "subject": "Launch team", "description": "For the launch",
                "join_approval_mode": "approval_required" })
    );
    // Meta creates the group after answering, and says so with the group_create webhook.
    let group = cluster().graph.group_created_by(&request_id).expect("wa-sim made the group");
    let created = payloads::group_lifecycle_value("group_create", &group, "Launch team", unix_now(), false);
    assert_eq!(created["groups"][0]["request_id"], request_id.as_str());
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, created.clone())).status, 200);
    let row = db
        .query_one(
            "SELECT g.group_id, g.invite_link, g.status FROM wa_actions a
               JOIN wa_groups g ON g.channel_id = a.channel_id AND g.create_request_id = a.result ->> 'request_id'
              WHERE a.id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), group);
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), created["groups"][0]["invite_link"].as_str());
    assert_eq!(row.get::<_, String>(2), "active");
    // Meta's error: this number made as many groups as Meta allows.
    cluster().graph.fail_next("One too many", Fault::meta(131211));
    let id: i64 = db.query_one("SELECT wa_create_group($1, 'One too many')", &[&ch.name]).unwrap().get(0);
    let (status, _, _, code) = ended(&mut db, id);
    assert_eq!((status.as_str(), code), ("failed", Some(131211)));
    let hint: Option<String> = db.query_one("SELECT error_hint FROM wa_actions WHERE id = $1", &[&id]).unwrap().get(0);
    assert!(hint.unwrap_or_default().contains("10,000"));
    // Checked when queued.
    let (msg, _) = error_of("SELECT wa_create_group($1, repeat('x', 129))", &[&ch.name]);
    assert!(msg.contains("at most 128"), "{msg}");
}

/// A group made through the API (wa-sim knows it) and announced by its webhook.
fn made_group(ch: &Channel, db: &mut postgres::Client, subject: &str) -> String {
    let id: i64 = db
        .query_one("SELECT wa_create_group($1, $2, join_approval_required => true)", &[&ch.name, &subject])
        .unwrap()
        .get(0);
    let request_id = ended(db, id).2.unwrap()["request_id"].as_str().unwrap().to_string();
    let group = cluster().graph.group_created_by(&request_id).unwrap();
    let created = payloads::group_lifecycle_value("group_create", &group, subject, unix_now(), false);
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, created)).status, 200);
    group
}

fn invite_link_of(db: &mut postgres::Client, ch: &Channel, group: &str) -> Option<String> {
    db.query_one("SELECT invite_link FROM wa_groups WHERE channel_id = $1 AND group_id = $2", &[&ch.id, &group])
        .unwrap()
        .get(0)
}

/// Getting and resetting the invite link: GET and POST on the group's node; the link Meta
/// answers is the group's. A group Meta does not have fails with Graph's error 100.
#[test]
fn a_groups_invite_link_is_read_and_reset() {
    let ch = cluster().add_channel("grp-link");
    let mut db = cluster().connect();
    let group = made_group(&ch, &mut db, "Link team");
    let first = invite_link_of(&mut db, &ch, &group).unwrap();
    let mut listener = Listener::new(&["wa_group"]);
    let reset: i64 = db.query_one("SELECT wa_reset_group_invite_link($1, $2)", &[&ch.name, &group]).unwrap().get(0);
    let get: i64 = db.query_one("SELECT wa_get_group_invite_link($1, $2)", &[&ch.name, &group]).unwrap().get(0);
    let (status, _, reset_result, _) = ended(&mut db, reset);
    assert_eq!(status, "done");
    let (status, _, get_result, _) = ended(&mut db, get);
    assert_eq!(status, "done");
    let new_link = reset_result.unwrap()["invite_link"].as_str().unwrap().to_string();
    assert_ne!(new_link, first, "a reset makes a new link");
    assert_eq!(get_result.unwrap()["invite_link"], new_link.as_str(), "performed in the order queued");
    assert_eq!(invite_link_of(&mut db, &ch, &group).as_deref(), Some(new_link.as_str()));
    // The new link is notified on wa_group; reading the same link again is not.
    let notified: Vec<_> = listener.drain_all().into_iter().filter(|(_, p)| p["channel_id"] == ch.id).collect();
    assert_eq!(notified, [("wa_group".to_string(), json!({ "channel_id": ch.id }))]);
    let sent = requests_to(&group, "invite_link");
    assert_eq!(sent.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["POST", "GET"]);
    assert_eq!(sent[0].json(), json!({ "messaging_product": "whatsapp" }));
    assert_eq!(sent[1].body, "");
    // Meta redelivers the group_create webhook (with the first link): the new link stays.
    let again = payloads::group_lifecycle_value("group_create", &group, "Link team", unix_now(), false);
    assert_eq!(again["groups"][0]["invite_link"], first.as_str());
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, again)).status, 200);
    assert_eq!(invite_link_of(&mut db, &ch, &group).as_deref(), Some(new_link.as_str()));
    // A group this channel knows (by its webhook) but Meta does not have: Graph's error 100.
    let unknown = "Y2FwaV9ncm91cDpnb25lZD";
    let gone = payloads::group_lifecycle_value("group_create", unknown, "Gone", unix_now(), false);
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, gone)).status, 200);
    let id: i64 = db.query_one("SELECT wa_get_group_invite_link($1, $2)", &[&ch.name, &unknown]).unwrap().get(0);
    let (status, attempts, _, code) = ended(&mut db, id);
    assert_eq!((status.as_str(), attempts, code), ("failed", 1, Some(100)));
    // One the channel does not know is refused when queued.
    let (msg, hint) = error_of("SELECT wa_reset_group_invite_link($1, 'nope')", &[&ch.name]);
    assert!(msg.contains("'nope' is not a group of channel"), "{msg}");
    assert!(hint.contains("wa_groups"), "{hint}");
}

/// Join requests: listed into wa_group_join_requests, approved and rejected per request (one
/// Meta cannot decide is reported with its own error), and participants removed.
#[test]
fn join_requests_are_listed_approved_rejected_and_participants_removed() {
    let ch = cluster().add_channel("grp-join");
    let mut db = cluster().connect();
    let group = made_group(&ch, &mut db, "Join team");
    let ann = cluster().graph.add_join_request(&group, "15557770061");
    let bob = cluster().graph.add_join_request(&group, "15557770062");
    // Meta throttles the group's first listing (131208, too many group operations): retried
    // after its backoff, as a send is.
    cluster().graph.fail_next(&group, Fault::meta(131208));
    let list: i64 = db.query_one("SELECT wa_list_group_join_requests($1, $2)", &[&ch.name, &group]).unwrap().get(0);
    let (status, attempts, _, code) = ended(&mut db, list);
    assert_eq!((status.as_str(), attempts, code), ("done", 2, None));
    let listings = requests_to(&group, "join_requests");
    assert_eq!(listings.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["GET", "GET"]);
    let open = |db: &mut postgres::Client| -> Vec<(String, Option<String>, bool)> {
        db.query(
            "SELECT join_request_id, wa_id, requested_at IS NOT NULL FROM wa_group_join_requests
              WHERE channel_id = $1 AND group_id = $2 ORDER BY wa_id",
            &[&ch.id, &group],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    assert_eq!(
        open(&mut db),
        [(ann.clone(), Some("15557770061".into()), true), (bob.clone(), Some("15557770062".into()), true)]
    );
    // Approve Ann, and an id Meta does not have: done, with Meta's per-request error.
    let approve: i64 = db
        .query_one(
            "SELECT wa_approve_group_join_requests($1, $2, ARRAY[$3, 'MTY0NjcwNDM1OTU6bm9wZQ'])",
            &[&ch.name, &group, &ann],
        )
        .unwrap()
        .get(0);
    let (status, _, result, code) = ended(&mut db, approve);
    assert_eq!((status.as_str(), code), ("done", Some(131203)));
    let result = result.unwrap();
    assert_eq!(result["approved_join_requests"], json!([ann]));
    assert_eq!(result["failed_join_requests"][0]["join_request_id"], "MTY0NjcwNDM1OTU6bm9wZQ");
    let sent = requests_to(&group, "join_requests");
    assert_eq!(sent[2].method, "POST");
    assert_eq!(
        sent[2].json(),
        json!({ "messaging_product": "whatsapp", "join_requests": [ann, "MTY0NjcwNDM1OTU6bm9wZQ"] })
    );
    assert_eq!(open(&mut db), [(bob.clone(), Some("15557770062".into()), true)]);
    assert_eq!(cluster().graph.group_participants(&group), ["15557770061"]);
    // Reject Bob: DELETE, the same body.
    let reject: i64 = db
        .query_one("SELECT wa_reject_group_join_requests($1, $2, ARRAY[$3])", &[&ch.name, &group, &bob])
        .unwrap()
        .get(0);
    let (status, _, _, code) = ended(&mut db, reject);
    assert_eq!((status.as_str(), code), ("done", None));
    let sent = requests_to(&group, "join_requests");
    assert_eq!((sent[3].method.as_str(), &sent[3].json()["join_requests"]), ("DELETE", &json!([bob])));
    assert!(open(&mut db).is_empty());
    // A listing drops what Meta no longer lists.
    let stale = cluster().graph.add_join_request(&group, "15557770063");
    let list: i64 = db.query_one("SELECT wa_list_group_join_requests($1, $2)", &[&ch.name, &group]).unwrap().get(0);
    assert_eq!(ended(&mut db, list).0, "done");
    assert_eq!(open(&mut db).len(), 1);
    let reject: i64 = db
        .query_one("SELECT wa_reject_group_join_requests($1, $2, ARRAY[$3])", &[&ch.name, &group, &stale])
        .unwrap()
        .get(0);
    assert_eq!(ended(&mut db, reject).0, "done");
    // Remove Ann: DELETE on participants; and Meta's error for one who is not in the group.
    let remove: i64 = db
        .query_one("SELECT wa_remove_group_participants($1, $2, ARRAY['+1 555 777 0061'])", &[&ch.name, &group])
        .unwrap()
        .get(0);
    assert_eq!(ended(&mut db, remove).0, "done");
    let sent = requests_to(&group, "participants");
    assert_eq!(sent[0].method, "DELETE");
    assert_eq!(
        sent[0].json(),
        json!({ "messaging_product": "whatsapp", "participants": [{ "user": "+15557770061" }] })
    );
    assert!(cluster().graph.group_participants(&group).is_empty());
    let remove: i64 = db
        .query_one("SELECT wa_remove_group_participants($1, $2, ARRAY['+15557770062'])", &[&ch.name, &group])
        .unwrap()
        .get(0);
    let (status, _, _, code) = ended(&mut db, remove);
    assert_eq!((status.as_str(), code), ("failed", Some(131212)));
    // Checked when queued: more participants than a group has.
    let (msg, _) = error_of(
        "SELECT wa_remove_group_participants($1, $2, ARRAY(SELECT '+1555000000' || i FROM generate_series(1, 9) i))",
        &[&ch.name, &group],
    );
    assert!(msg.contains("a group has at most 8"), "{msg}");
}
