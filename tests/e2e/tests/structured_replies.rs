//! Structured replies (issue 27): a Flow's answers, an address and a call permission arrive as
//! `interactive` messages whose answers are kept parsed (wa_messages.flow_response, and the
//! Flow's flow_token) and summed up in body and the conversation's preview, instead of a blank
//! bubble.

use e2e::wa_sim::payloads::{self, Customer};
use e2e::{cluster, one_message};
use serde_json::{Value, json};

#[test]
fn flow_address_and_call_permission_replies_are_readable() {
    let ch = cluster().add_channel("flows");
    let customer = Customer { wa_id: "15552704001".into(), name: "Sheena Nelson".into() };
    let post = |kind: &str, wamid: &str, text: &str, at: i64| {
        let value = payloads::message_value(kind, wamid, &customer, text, at).unwrap();
        assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, value)).status, 200);
    };
    post("flow_reply", "wamid.flows.1", "window seat", 1765000001);
    let row = one_message(&ch, "wamid.flows.1", "m.type, m.body, m.flow_response, m.flow_token");
    assert_eq!(row.get::<_, String>(0), "interactive");
    assert_eq!(row.get::<_, String>(1), "Flow reply: date: 2026-12-24, guests: 2, notes: window seat");
    assert_eq!(
        row.get::<_, Value>(2),
        json!({"flow_token": "sim-flow-token", "date": "2026-12-24", "guests": "2", "notes": "window seat"})
    );
    assert_eq!(row.get::<_, String>(3), "sim-flow-token");
    let preview = || -> String {
        cluster()
            .connect()
            .query_one(
                "SELECT last_body FROM wa_conversations WHERE channel = $1 AND wa_id = $2",
                &[&ch.name, &customer.wa_id],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(preview(), "Flow reply: date: 2026-12-24, guests: 2, notes: window seat");

    post("address_reply", "wamid.flows.2", "Wework", 1765000002);
    let row = one_message(&ch, "wamid.flows.2", "m.body, m.flow_response -> 'values' ->> 'city', m.flow_token");
    assert!(row.get::<_, String>(0).starts_with("Address: address: Wework, city: Mumbai"));
    assert_eq!(row.get::<_, String>(1), "Mumbai");
    assert_eq!(row.get::<_, Option<String>>(2), None, "an address has no flow token");

    post("call_permission_reply", "wamid.flows.3", "", 1765000003);
    let row = one_message(&ch, "wamid.flows.3", "m.body, m.flow_response ->> 'response'");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("Call permission accepted".into(), "accept".into())
    );
    assert_eq!(preview(), "Call permission accepted");

    // A plain button reply is no structured reply: no flow columns.
    post("button_reply", "wamid.flows.4", "Yes", 1765000004);
    let row = one_message(&ch, "wamid.flows.4", "m.body, m.flow_response IS NULL");
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("Yes".into(), true));
}
