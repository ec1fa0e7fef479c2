//! Templates (issue 6): wa_sync_templates() reads the business account's templates from the
//! Graph API, a template status webhook changes one, and wa_send_template() refuses, before
//! sending, a template that is unknown, not approved, or given the wrong number of parameters.

use e2e::{Channel, DEADLINE, cluster, error_of};
use serde_json::json;

fn channel_with_templates(prefix: &str, waba_id: &str) -> Channel {
    let ch = cluster().add_channel(prefix);
    cluster().connect().execute("UPDATE wa_channels SET waba_id = $1 WHERE name = $2", &[&waba_id, &ch.name]).unwrap();
    cluster().graph.set_templates(
        waba_id,
        json!([
            { "id": "1001", "name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
              "components": [{ "type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped." }] },
            { "id": "1002", "name": "hello_world", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
              "components": [{ "type": "BODY", "text": "Hello World" }] },
            { "id": "1003", "name": "spring_sale", "language": "en_US", "status": "REJECTED", "category": "MARKETING",
              "components": [{ "type": "BODY", "text": "Sale!" }] },
            { "id": "1004", "name": "delivery_named", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
              "parameter_format": "NAMED",
              "components": [{ "type": "BODY", "text": "Hi {{first_name}}, order {{order_id}} arrives today.",
                               "example": { "body_text_named_params": [
                                   { "param_name": "first_name", "example": "Jess" },
                                   { "param_name": "order_id", "example": "A-1" } ] } }] },
            { "id": "1005", "name": "shipped_photo", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
              "components": [{ "type": "HEADER", "format": "IMAGE" },
                             { "type": "BODY", "text": "Your order has shipped." },
                             { "type": "BUTTONS", "buttons": [{ "type": "URL", "text": "Track", "url": "https://shop.example/t/{{1}}" }] }] }
        ]),
    );
    ch
}

#[test]
fn sync_reads_the_accounts_templates() {
    let ch = channel_with_templates("tpl-sync", "5550001");
    let mut db = cluster().connect();
    let n: i32 = db.query_one("SELECT wa_sync_templates($1)", &[&ch.name]).unwrap().get(0);
    assert_eq!(n, 5);
    let rows: Vec<(String, String)> = db
        .query("SELECT t.name, t.status FROM wa_templates t JOIN wa_channels c ON c.id = t.channel_id WHERE c.name = $1 ORDER BY 1", &[&ch.name])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows[1], ("hello_world".to_string(), "APPROVED".to_string()));
    assert_eq!(rows.len(), 5);
    // A channel without a business account id says where to find it.
    let plain = cluster().add_channel("tpl-nowaba");
    let (msg, hint) = error_of("SELECT wa_sync_templates($1)", &[&plain.name]);
    assert!(
        msg.contains("has no WhatsApp Business Account id") && hint.contains("UPDATE wa_channels SET waba_id"),
        "{msg} / {hint}"
    );
}

#[test]
fn send_refuses_unknown_unapproved_and_miscounted_templates() {
    let ch = channel_with_templates("tpl-send", "5550002");
    let mut db = cluster().connect();
    db.execute("SELECT wa_sync_templates($1)", &[&ch.name]).unwrap();
    let n = &ch.name;
    let (msg, hint) = error_of("SELECT wa_send_template($1, '15552220001', 'order_updates', 'en_US')", &[n]);
    assert!(msg.contains("is not a template of channel"), "{msg}");
    assert!(hint.contains("order_update (en_US, APPROVED)") && hint.contains("wa_sync_templates"), "{hint}");
    let (msg, _) = error_of("SELECT wa_send_template($1, '15552220001', 'spring_sale', 'en_US')", &[n]);
    assert!(msg.contains("is REJECTED, not APPROVED"), "{msg}");
    let one = json!([{ "type": "body", "parameters": [{ "type": "text", "text": "Ann" }] }]);
    let (msg, hint) = error_of("SELECT wa_send_template($1, '15552220001', 'order_update', 'en_US', $2)", &[n, &one]);
    assert!(msg.contains("expects 2 body parameter(s), got 1"), "{msg}");
    assert!(hint.contains("Hi {{1}}, your order {{2}} has shipped."), "{hint}");
    // Right: queued and sent, outside any 24-hour window.
    let two = json!([{ "type": "body", "parameters": [{ "type": "text", "text": "Ann" }, { "type": "text", "text": "#42" }] }]);
    db.execute("SELECT wa_send_template($1, '15552220001', 'order_update', 'en_US', $2)", &[n, &two]).unwrap();
    let got = cluster().graph.wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
    assert_eq!(got[0].json()["template"]["components"], two);
}

#[test]
fn a_media_header_and_a_url_button_must_be_given() {
    let ch = channel_with_templates("tpl-header", "5550009");
    let mut db = cluster().connect();
    db.execute("SELECT wa_sync_templates($1)", &[&ch.name]).unwrap();
    let n = &ch.name;
    let (msg, hint) = error_of("SELECT wa_send_template($1, '15552220009', 'shipped_photo', 'en_US')", &[n]);
    assert!(msg.contains("needs its image header") && msg.contains("URL suffix of button 0"), "{msg}");
    assert!(hint.contains("https://shop.example/t/{{1}}") && hint.contains("132000"), "{hint}");
    let only_header = json!([{ "type": "header", "parameters": [{ "type": "image", "image": { "id": "m-1" } }] }]);
    let (msg, _) =
        error_of("SELECT wa_send_template($1, '15552220009', 'shipped_photo', 'en_US', $2)", &[n, &only_header]);
    assert!(!msg.contains("image header") && msg.contains("URL suffix of button 0"), "{msg}");
    let both = json!([
        { "type": "header", "parameters": [{ "type": "image", "image": { "id": "m-1" } }] },
        { "type": "button", "sub_type": "url", "index": "0", "parameters": [{ "type": "text", "text": "A-42" }] }
    ]);
    db.execute("SELECT wa_send_template($1, '15552220009', 'shipped_photo', 'en_US', $2)", &[n, &both]).unwrap();
    let got = cluster().graph.wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
    assert_eq!(got[0].json()["template"]["components"], both);
}

#[test]
fn a_status_webhook_changes_a_template_and_sends_follow_it() {
    let ch = channel_with_templates("tpl-status", "5550003");
    cluster().connect().execute("SELECT wa_sync_templates($1)", &[&ch.name]).unwrap();
    let update = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "5550003", "time": 1, "changes": [{
        "field": "message_template_status_update",
        "value": { "event": "PAUSED", "message_template_id": 1002, "message_template_name": "hello_world",
                   "message_template_language": "en_US", "reason": "LOW_QUALITY" } }] }] });
    assert_eq!(ch.post_signed(&update).status, 200);
    let (status, reason): (String, String) = {
        let r = cluster()
            .connect()
            .query_one("SELECT t.status, t.reason FROM wa_templates t JOIN wa_channels c ON c.id = t.channel_id WHERE c.name = $1 AND t.name = 'hello_world'", &[&ch.name])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((status.as_str(), reason.as_str()), ("PAUSED", "LOW_QUALITY"));
    let (msg, hint) = error_of("SELECT wa_send_template($1, '15552220002', 'hello_world', 'en_US')", &[&ch.name]);
    assert!(msg.contains("is PAUSED by Meta") && hint.contains("LOW_QUALITY"), "{msg} / {hint}");
}

#[test]
fn named_parameters_are_each_given_once_by_name() {
    let ch = channel_with_templates("tpl-named", "5550004");
    let mut db = cluster().connect();
    db.execute("SELECT wa_sync_templates($1)", &[&ch.name]).unwrap();
    db.execute("UPDATE wa_channels SET allow_outside_window = true WHERE name = $1", &[&ch.name]).unwrap();
    let named = |pairs: &[(&str, &str)]| {
        let parameters: Vec<_> =
            pairs.iter().map(|(n, t)| json!({ "type": "text", "parameter_name": n, "text": t })).collect();
        json!([{ "type": "body", "parameters": parameters }])
    };
    let sql = "SELECT wa_send_template($1, '15552220004', 'delivery_named', 'en_US', $2)";
    let n = &ch.name;
    let (msg, hint) = error_of(sql, &[n, &named(&[("first_name", "Ann"), ("first_name", "Ann")])]);
    assert!(
        msg.contains("expects the named body parameters first_name, order_id")
            && msg.contains("missing order_id")
            && msg.contains("given twice: first_name"),
        "{msg}"
    );
    assert!(hint.contains("Hi {{first_name}}") && hint.contains("\"parameter_name\""), "{hint}");
    let (msg, _) = error_of(
        sql,
        &[
            n,
            &json!([{ "type": "body", "parameters": [{ "type": "text", "text": "Ann" }, { "type": "text", "text": "A-1" }] }]),
        ],
    );
    assert!(msg.contains("2 without a parameter_name"), "{msg}");
    // Right: sent, in Meta's shape, names and all.
    let id: i64 = db.query_one(sql, &[n, &named(&[("order_id", "A-7"), ("first_name", "Ann")])]).unwrap().get(0);
    let got = cluster().graph.wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
    assert_eq!(got.len(), 1, "message {id} was not sent");
    assert_eq!(got[0].json()["template"]["components"][0]["parameters"][1]["parameter_name"], "first_name");
}

#[test]
fn marketing_templates_go_through_the_marketing_messages_api_when_the_channel_enables_it() {
    let ch = cluster().add_channel("tpl-marketing");
    let mut db = cluster().connect();
    db.execute("UPDATE wa_channels SET waba_id = '5550009' WHERE name = $1", &[&ch.name]).unwrap();
    cluster().graph.set_templates(
        "5550009",
        json!([
            { "id": "2001", "name": "winter_sale", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
              "components": [{ "type": "BODY", "text": "30% off this week" }] },
            { "id": "2002", "name": "receipt", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
              "components": [{ "type": "BODY", "text": "Thanks for your order" }] }
        ]),
    );
    db.query_one("SELECT wa_sync_templates($1)", &[&ch.name]).unwrap();
    let send = |db: &mut postgres::Client, name: &str, to: &str| -> i64 {
        db.query_one("SELECT wa_send_template($1, $2, $3, 'en_US')", &[&ch.name, &to, &name]).unwrap().get(0)
    };
    // Off (the default): everything goes to /messages.
    send(&mut db, "winter_sale", "15550006001");
    // On: the marketing template goes to /marketing_messages, the utility one still to /messages.
    db.execute("UPDATE wa_channels SET marketing_messages = true WHERE name = $1", &[&ch.name]).unwrap();
    let marketing = send(&mut db, "winter_sale", "15550006002");
    send(&mut db, "receipt", "15550006003");
    let got = cluster().graph.wait_for(3, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
    let mut endpoints: Vec<(String, String)> = got
        .iter()
        .map(|r| (r.json()["to"].as_str().unwrap_or_default().to_string(), r.endpoint().to_string()))
        .collect();
    endpoints.sort();
    assert_eq!(
        endpoints,
        [
            ("+15550006001".to_string(), "messages".to_string()),
            ("+15550006002".into(), "marketing_messages".into()),
            ("+15550006003".into(), "messages".into()),
        ]
    );
    let body = got.iter().find(|r| r.endpoint() == "marketing_messages").unwrap().json();
    assert_eq!(body["template"]["name"], "winter_sale", "the same request body as /messages");
    let status = e2e::poll(|| {
        let s: String = db.query_one("SELECT status FROM wa_messages WHERE id = $1", &[&marketing]).unwrap().get(0);
        (s == "sent").then_some(s)
    });
    assert_eq!(status.as_deref(), Some("sent"), "Meta's answer from the Marketing Messages API is recorded");
}
