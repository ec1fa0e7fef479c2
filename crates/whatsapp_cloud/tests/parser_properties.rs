//! The webhook parser never panics: on arbitrary bytes, on arbitrary JSON, and on JSON shaped
//! like Meta's payloads whose every leaf may be any JSON value (strings where numbers belong,
//! arrays where objects belong, NUL characters, huge numbers). Whatever it accepts, every
//! message it returns has a wamid and no string in it holds a NUL.

use proptest::prelude::*;
use serde_json::{Value, json};
use whatsapp_cloud::webhook;

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        "\\PC{0,4}\u{0}\\PC{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field of Meta's shape: usually a plausible value, sometimes anything at all.
fn field(plausible: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Value> {
    prop_oneof![3 => plausible.boxed(), 1 => any_json().boxed()]
}

fn message() -> impl Strategy<Value = Value> {
    (
        field("wamid\\.[A-Za-z0-9]{1,10}".prop_map(Value::String)),
        field("[0-9]{5,15}".prop_map(Value::String)),
        field("[0-9]{1,12}".prop_map(Value::String)),
        field(prop_oneof![Just(json!("text")), Just(json!("image")), Just(json!("system")), Just(json!("edit"))]),
        any_json(),
    )
        .prop_map(|(id, from, timestamp, kind, body)| {
            let mut m = json!({ "id": id, "from": from, "timestamp": timestamp, "type": kind });
            if let Some(k) = m["type"].as_str().map(str::to_string) {
                m[k] = body;
            }
            m
        })
}

fn status() -> impl Strategy<Value = Value> {
    (field("wamid\\.[A-Za-z0-9]{1,10}".prop_map(Value::String)), field(Just(json!("read"))), any_json())
        .prop_map(|(id, status, errors)| json!({ "id": id, "status": status, "timestamp": "1", "errors": errors }))
}

fn metas_shape() -> impl Strategy<Value = Value> {
    let change = (
        field(Just(json!("messages"))),
        field("[0-9]{1,15}".prop_map(Value::String)),
        prop::collection::vec(any_json(), 0..3),
        prop::collection::vec(message(), 0..4),
        prop::collection::vec(status(), 0..3),
    )
        .prop_map(|(f, pnid, contacts, messages, statuses)| {
            json!({ "field": f, "value": { "metadata": { "phone_number_id": pnid }, "contacts": contacts,
                                            "messages": messages, "statuses": statuses } })
        });
    prop::collection::vec(prop::collection::vec(change, 0..3), 0..3).prop_map(|entries| {
        let entries: Vec<Value> = entries.into_iter().map(|changes| json!({ "id": "1", "changes": changes })).collect();
        json!({ "object": "whatsapp_business_account", "entry": entries })
    })
}

const NUL: char = '\u{0}';

fn no_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.contains(NUL),
        Value::Array(a) => a.iter().all(no_nul),
        Value::Object(o) => o.iter().all(|(k, v)| !k.contains(NUL) && no_nul(v)),
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = webhook::parse(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        let _ = webhook::parse(v.to_string().as_bytes());
    }

    #[test]
    fn metas_shape_with_any_leaves_never_panics(v in metas_shape()) {
        if let Ok(payload) = webhook::parse(v.to_string().as_bytes()) {
            for change in &payload.changes {
                for m in &change.messages {
                    prop_assert!(!m.wamid.is_empty() || m.raw.get("id").is_some());
                    prop_assert!(no_nul(&m.raw));
                    prop_assert!(m.text.as_deref().is_none_or(|t| !t.contains(NUL)));
                    let _ = change.sender_of(m);
                }
            }
            let _ = (payload.message_count(), payload.status_count());
        }
    }
}
