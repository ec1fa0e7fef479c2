//! What the inbound tests share: a channel's stored messages read back by column, and a webhook
//! built from hand-written `contacts[]` and `messages[]`.

use crate::{Channel, cluster};
use serde_json::{Value, json};
use wa_sim::payloads;

/// The `columns` of every message `ch` stored, in the order they were stored (`m`: `wa_messages`).
pub fn messages_of(ch: &Channel, columns: &str) -> Vec<postgres::Row> {
    let sql = format!(
        "SELECT {columns} FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 ORDER BY m.id"
    );
    cluster().connect().query(&sql, &[&ch.name]).unwrap()
}

/// The `columns` of the message `wamid` that `ch` stored.
pub fn one_message(ch: &Channel, wamid: &str, columns: &str) -> postgres::Row {
    let sql = format!(
        "SELECT {columns} FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 AND m.wamid = $2"
    );
    cluster().connect().query_one(&sql, &[&ch.name, &wamid]).unwrap()
}

/// A webhook to `ch` with one change holding these `contacts` and `messages`.
pub fn value_with(ch: &Channel, contacts: Value, messages: Value) -> Value {
    payloads::envelope(&ch.phone_number_id, json!({ "contacts": contacts, "messages": messages }))
}
