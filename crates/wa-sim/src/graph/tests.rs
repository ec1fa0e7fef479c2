//! The fake Graph API seen from outside, over HTTP: media, templates, sends and the status
//! webhooks it posts back.

use super::statuses::DEFAULT_GROUP_PARTICIPANTS;
use super::{Directory, GraphSim, Options, Received, WebhookTarget, sha256_base64};
use bounded_http::{Limits, Request, Response};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn get(url: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut r = req.call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_vec().unwrap())
}

#[test]
fn serves_media_like_meta_and_takes_uploads() {
    let sim = GraphSim::start(0).unwrap();
    let id = sim.add_media("image/jpeg", b"\xff\xd8jpeg bytes".to_vec());
    let (status, body) = get(&format!("{}/v25.0/{id}", sim.url()), Some("t"));
    assert_eq!(status, 200);
    let info: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((info["mime_type"].as_str(), info["file_size"].as_u64()), (Some("image/jpeg"), Some(12)));
    assert_eq!(info["sha256"], sha256_base64(b"\xff\xd8jpeg bytes"));
    let url = info["url"].as_str().unwrap();
    assert_eq!(get(url, None).0, 401, "the download needs the token");
    assert_eq!(get(url, Some("t")), (200, b"\xff\xd8jpeg bytes".to_vec()));
    assert_eq!(get(&format!("{}/v25.0/999", sim.url()), Some("t")).0, 400);
    // A number's required token is checked on its media lookups, as on its sends.
    sim.require_token("555", "right");
    assert_eq!(get(&format!("{}/v25.0/{id}?phone_number_id=555", sim.url()), Some("t")).0, 401);
    assert_eq!(get(&format!("{}/v25.0/{id}?phone_number_id=555", sim.url()), Some("right")).0, 200);
    assert_eq!(get(&format!("{}/v25.0/{id}?phone_number_id=556", sim.url()), Some("t")).0, 200);

    let body = b"--XX\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--XX--\r\n";
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent
        .post(&format!("{}/v25.0/123/media", sim.url()))
        .header("Authorization", "Bearer t")
        .content_type("multipart/form-data; boundary=XX")
        .send(&body[..])
        .unwrap();
    let uploaded: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    let new_id = uploaded["id"].as_str().unwrap();
    let (_, info) = get(&format!("{}/v25.0/{new_id}", sim.url()), Some("t"));
    let info: Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(get(info["url"].as_str().unwrap(), Some("t")), (200, b"PNGDATA".to_vec()));
}

#[test]
fn lists_templates_per_business_account() {
    let sim = GraphSim::start(0).unwrap();
    sim.set_templates("555", json!([{ "name": "hello_world", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "components": [] }]));
    let (status, body) = get(&format!("{}/v25.0/555/message_templates", sim.url()), Some("t"));
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, list["data"][0]["name"].as_str()), (200, Some("hello_world")));
}

fn post(sim: &GraphSim, endpoint: &str, body: Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent
        .post(&format!("{}/v23.0/123/{endpoint}", sim.url()))
        .header("Authorization", "Bearer t")
        .content_type("application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    (r.status().as_u16(), serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap())
}

fn template() -> Value {
    json!({ "name": "spring_sale", "language": { "code": "en_US" } })
}

const GROUP: &str = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD";

#[test]
fn a_restarted_simulator_never_answers_a_wamid_twice() {
    let send =
        json!({ "messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": { "body": "hi" } });
    let first = post(&GraphSim::start(0).unwrap(), "messages", send.clone()).1;
    let again = post(&GraphSim::start(0).unwrap(), "messages", send).1;
    let wamid = |a: &Value| a["messages"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(wamid(&first), wamid(&again), "the first send of each run");
}

#[test]
fn takes_a_quote_on_every_kind_but_reactions_and_checks_contact_cards_like_meta() {
    let sim = GraphSim::start(0).unwrap();
    let send = |kind: &str, object: Value, context: Option<Value>| {
        let mut body = json!({ "messaging_product": "whatsapp", "to": "+16505551234", "type": kind, kind: object });
        if let Some(c) = context {
            body["context"] = c;
        }
        let (status, answer) = post(&sim, "messages", body);
        (status, answer["error"]["code"].as_i64(), answer["error"]["message"].as_str().unwrap_or("").to_string())
    };
    let quote = Some(json!({ "message_id": "wamid.Q" }));
    let card = json!([{ "name": { "formatted_name": "Ann Lee", "first_name": "Ann" }, "phones": [{ "phone": "+15557654321" }] }]);
    for (kind, object) in [
        ("text", json!({ "body": "hi" })),
        ("image", json!({ "id": "123" })),
        ("location", json!({ "latitude": 1.0, "longitude": 2.0 })),
        ("template", template()),
        ("contacts", card.clone()),
    ] {
        assert_eq!(send(kind, object, quote.clone()).0, 200, "{kind} with a quote");
    }
    let reaction = json!({ "message_id": "wamid.R", "emoji": "👍" });
    assert_eq!(send("reaction", reaction.clone(), None).0, 200);
    let (status, code, message) = send("reaction", reaction, quote);
    assert_eq!((status, code), (400, Some(131009)), "{message}");
    assert_eq!(send("text", json!({ "body": "hi" }), Some(json!({ "id": "wamid.Q" }))).1, Some(131008));

    for (cards, code, says) in [
        (json!([]), 131009, "1 to 257"),
        (json!({ "name": { "formatted_name": "A", "first_name": "A" } }), 131009, "1 to 257"),
        (json!([{ "name": { "first_name": "Ann" } }]), 131008, "formatted_name"),
        (json!([{ "name": { "formatted_name": "Ann" } }]), 131008, "at least one of first_name"),
    ] {
        let (status, got, message) = send("contacts", cards.clone(), None);
        assert_eq!((status, got), (400, Some(code)), "{cards}: {message}");
        assert!(message.contains(says), "{message}");
    }
}

#[test]
fn marketing_messages_take_templates_only() {
    let sim = GraphSim::start(0).unwrap();
    let send =
        json!({ "messaging_product": "whatsapp", "to": "+16505551234", "type": "template", "template": template() });
    let (status, answer) = post(&sim, "marketing_messages", send);
    assert_eq!(status, 200);
    let wamid = answer["messages"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(answer["messages"][0]["message_status"], "accepted");
    assert_eq!(answer["contacts"][0], json!({ "input": "+16505551234", "wa_id": "16505551234" }));

    let text =
        json!({ "messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": { "body": "hi" } });
    let (status, answer) = post(&sim, "marketing_messages", text.clone());
    assert_eq!((status, answer["error"]["code"].as_i64()), (400, Some(100)));
    assert_eq!(answer["error"]["message"], "(#100) Marketing messages must be templates");
    // The same text on /messages is an ordinary send, answered without message_status.
    let (status, answer) = post(&sim, "messages", text);
    assert_eq!(status, 200);
    assert!(answer["messages"][0].get("message_status").is_none());

    let received = sim.received();
    let endpoints: Vec<&str> = received.iter().map(Received::endpoint).collect();
    assert_eq!(endpoints, ["marketing_messages", "marketing_messages", "messages"]);
    assert_eq!(received[0].path, "/v23.0/123/marketing_messages");
    assert_eq!(received[0].wamid.as_deref(), Some(wamid.as_str()));
    assert_eq!(received[1].wamid, None);
}

#[test]
fn group_sends_answer_with_the_group_and_refuse_unsupported_types() {
    let sim = GraphSim::start(0).unwrap();
    let send = |to: &str, kind: &str, object: Value| {
        let mut body = json!({ "messaging_product": "whatsapp", "recipient_type": "group", "to": to, "type": kind });
        body[kind] = object;
        post(&sim, "messages", body)
    };
    let media = || json!({ "id": "1003383421387256" });
    let objects = [
        ("text", json!({ "body": "hello group" })),
        ("image", media()),
        ("video", media()),
        ("audio", media()),
        ("document", media()),
        ("sticker", media()),
        ("template", template()),
    ];
    for (kind, object) in objects {
        let (status, answer) = send(GROUP, kind, object);
        assert_eq!(status, 200, "{kind}: {answer}");
        assert_eq!(answer["messages"][0]["group_id"], GROUP, "{kind}");
        assert!(answer["messages"][0]["id"].as_str().unwrap().starts_with("wamid."));
        assert_eq!(answer["contacts"], json!([{ "input": GROUP, "wa_id": GROUP }]));
    }
    // Every character of a group id survives, even those a phone number would lose.
    let odd = "+Y2Fw/aV9+ncm91cD==";
    let (_, answer) = send(odd, "text", json!({ "body": "x" }));
    assert_eq!(
        (answer["messages"][0]["group_id"].as_str(), answer["contacts"][0]["wa_id"].as_str()),
        (Some(odd), Some(odd))
    );

    let refused = [
        ("interactive", json!({ "type": "button", "body": { "text": "?" } })),
        ("location", json!({ "latitude": 1.0, "longitude": 2.0 })),
        ("reaction", json!({ "message_id": "wamid.x", "emoji": "👍" })),
        ("contacts", json!([])),
    ];
    for (kind, object) in refused {
        let (status, answer) = send(GROUP, kind, object);
        assert_eq!((status, answer["error"]["code"].as_i64()), (400, Some(131009)), "{kind}");
        assert_eq!(
            answer["error"]["message"],
            "(#131009) Parameter value is not valid: this message type is not supported in groups"
        );
    }
    let received = sim.received();
    assert_eq!(received.iter().filter(|r| r.wamid.is_some()).count(), 8);
    assert_eq!(received[0].json()["to"], GROUP);
}

/// Collects the webhooks the simulator posts back.
#[derive(Default)]
struct Inbox(Mutex<Vec<Value>>);

impl bounded_http::Handler for Inbox {
    fn handle(&self, request: Request) -> Response {
        self.0.lock().unwrap().push(serde_json::from_slice(&request.body).unwrap_or(Value::Null));
        Response::text(200, "ok")
    }
}

struct To(String);

impl Directory for To {
    fn lookup(&self, _: &str) -> Option<WebhookTarget> {
        Some(WebhookTarget { url: self.0.clone(), app_secret: "secret".into() })
    }
}

#[test]
fn group_sends_get_sent_once_then_delivered_and_read_per_participant() {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let url = format!("http://{}/webhook/x", listener.local_addr().unwrap());
    let inbox = Arc::new(Inbox::default());
    bounded_http::serve(listener, Limits::default(), bounded_http::Tls::plain(), inbox.clone()).unwrap();
    let options = Options { statuses: Some(Arc::new(To(url))), ..Options::default() };
    let sim = GraphSim::start_with(0, options).unwrap();
    sim.set_group_participants(GROUP, &["15550002001", "15550002002", "15550002003"]);
    let text = |to: &str| {
        json!({ "messaging_product": "whatsapp", "recipient_type": "group", "to": to,
                                      "type": "text", "text": { "body": "hi" } })
    };
    let (_, known) = post(&sim, "messages", text(GROUP));
    let (_, unknown) = post(&sim, "messages", text("T3RoZXJHcm91cA"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while inbox.0.lock().unwrap().len() < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let posted = inbox.0.lock().unwrap().clone();
    assert_eq!(posted.len(), 6);
    for (answer, group, participants) in [
        (&known, GROUP, vec!["15550002001", "15550002002", "15550002003"]),
        (&unknown, "T3RoZXJHcm91cA", DEFAULT_GROUP_PARTICIPANTS.to_vec()),
    ] {
        let wamid = answer["messages"][0]["id"].as_str().unwrap();
        let statuses = |status: &str| -> Vec<Value> {
            posted
                .iter()
                .filter(|b| b["entry"][0]["changes"][0]["field"] == "messages")
                .flat_map(|b| b["entry"][0]["changes"][0]["value"]["statuses"].as_array().unwrap().clone())
                .filter(|s| s["id"] == wamid && s["status"] == status)
                .collect()
        };
        let sent = statuses("sent");
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0]["recipient_id"].as_str(), sent[0]["recipient_type"].as_str()),
            (Some(group), Some("group"))
        );
        for status in ["delivered", "read"] {
            let items = statuses(status);
            let who: Vec<&str> = items.iter().map(|s| s["recipient_participant_id"].as_str().unwrap()).collect();
            assert_eq!(who, participants, "{status}");
            assert!(items.iter().all(|s| s["recipient_id"] == group));
        }
    }
    // Each status kind of a send is one webhook: Meta aggregates the participants.
    assert!(posted.iter().all(|b| b["entry"][0]["changes"].as_array().unwrap().len() == 1));
}

#[test]
fn base64_matches_known_answers() {
    // sha256("") in base64, as Meta would print it.
    assert_eq!(sha256_base64(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

/// A request to a group's node (`/{version}/{group_id}/{endpoint}`), as Meta's Groups API takes it.
fn to_group(sim: &GraphSim, method: &str, group_id: &str, endpoint: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/v23.0/{group_id}/{endpoint}", sim.url());
    let mut r = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", "Bearer t").call(),
        ("POST", Some(b)) => agent.post(&url).header("Authorization", "Bearer t").send_json(b),
        (_, Some(b)) => agent.delete(&url).header("Authorization", "Bearer t").force_send_body().send_json(b),
        _ => unreachable!(),
    }
    .unwrap();
    (r.status().as_u16(), serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap())
}

#[test]
fn manages_groups_like_metas_groups_api() {
    let sim = GraphSim::start(0).unwrap();
    // A creation: checked like Meta checks it, answered with a request id, the group known after.
    let (status, error) = post(&sim, "groups", json!({ "messaging_product": "whatsapp", "subject": " " }));
    assert_eq!((status, error["error"]["code"].as_i64()), (400, Some(100)));
    let long = json!({ "messaging_product": "whatsapp", "subject": "x".repeat(129) });
    assert_eq!(post(&sim, "groups", long).1["error"]["code"], 100);
    let mode = json!({ "messaging_product": "whatsapp", "subject": "Team", "join_approval_mode": "ask" });
    assert_eq!(post(&sim, "groups", mode).1["error"]["code"], 100);
    let (status, created) = post(
        &sim,
        "groups",
        json!({ "messaging_product": "whatsapp", "subject": "Team", "join_approval_mode": "approval_required" }),
    );
    assert_eq!(status, 200);
    let group = sim.group_created_by(created["request_id"].as_str().unwrap()).expect("the request id names the group");
    // Its invite link, the same as its group_create webhook's; a reset makes another.
    let (_, link) = to_group(&sim, "GET", &group, "invite_link", None);
    let created_webhook = crate::payloads::group_lifecycle_value("group_create", &group, "Team", 0, false);
    assert_eq!(link["invite_link"], created_webhook["groups"][0]["invite_link"]);
    assert_eq!(created_webhook["groups"][0]["request_id"], created["request_id"]);
    let (_, reset) = to_group(&sim, "POST", &group, "invite_link", Some(json!({ "messaging_product": "whatsapp" })));
    assert_ne!(reset["invite_link"], link["invite_link"]);
    // Join requests: listed, approved or rejected each on its own.
    let (ann, bob) = (sim.add_join_request(&group, "15550001111"), sim.add_join_request(&group, "15550002222"));
    let (_, listed) = to_group(&sim, "GET", &group, "join_requests", None);
    assert_eq!(
        listed["data"][1],
        json!({ "join_request_id": bob, "wa_id": "15550002222", "creation_timestamp": listed["data"][1]["creation_timestamp"] })
    );
    let (status, approved) = to_group(
        &sim,
        "POST",
        &group,
        "join_requests",
        Some(json!({ "messaging_product": "whatsapp", "join_requests": [ann, "nope"] })),
    );
    assert_eq!((status, &approved["approved_join_requests"]), (200, &json!([ann])));
    assert_eq!(approved["failed_join_requests"][0]["errors"][0]["code"], 131203);
    assert_eq!(sim.group_participants(&group), ["15550001111"]);
    let (_, rejected) = to_group(
        &sim,
        "DELETE",
        &group,
        "join_requests",
        Some(json!({ "messaging_product": "whatsapp", "join_requests": [bob] })),
    );
    assert_eq!(rejected["rejected_join_requests"], json!([bob]));
    // Participants: only members can be removed.
    let remove = |user: &str| json!({ "messaging_product": "whatsapp", "participants": [{ "user": user }] });
    let (status, refused) = to_group(&sim, "DELETE", &group, "participants", Some(remove("+15550002222")));
    assert_eq!((status, refused["error"]["code"].as_i64()), (400, Some(131212)));
    assert_eq!(
        to_group(&sim, "DELETE", &group, "participants", Some(remove("+15550001111"))).1,
        json!({ "success": true })
    );
    assert!(sim.group_participants(&group).is_empty());
    // A group Meta does not have: Graph's error for an unknown node.
    let (status, unknown) = to_group(&sim, "GET", "Y2FwaV9ub25lZD", "invite_link", None);
    assert_eq!((status, unknown["error"]["code"].as_i64()), (400, Some(100)));
    assert!(unknown["error"]["message"].as_str().unwrap().contains("does not exist"));
}
