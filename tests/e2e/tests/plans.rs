//! Hot-path statements plan index lookups on a database the size of a year of traffic: a
//! channel with 200,000 contacts and 400,000 messages, analyzed. auto_explain prints the plan of
//! every statement the write path, the enqueue and the inbox's reads run (nested ones inside
//! the store functions and triggers too), and none may read a large table sequentially.
//!
//! Each call runs more than five times, so that the generic plans PL/pgSQL switches to after
//! five executions are checked as well as the first custom ones.

use e2e::cluster;
use postgres::NoTls;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

const CONTACTS: i64 = 200_000;
const MESSAGES: i64 = 400_000;
const LARGE_TABLES: &[&str] =
    &["wa_contacts", "wa_messages", "wa_message_statuses", "wa_media", "wa_conversation_state", "wa_webhook_events"];

/// A connection whose auto_explain output (NOTICEs) is collected.
fn explained() -> (postgres::Client, Arc<Mutex<Vec<String>>>) {
    let plans = Arc::new(Mutex::new(Vec::new()));
    let sink = plans.clone();
    let mut config = postgres::Config::from_str(&cluster().dsn()).unwrap();
    config.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    let mut client = config.connect(NoTls).unwrap();
    client
        .batch_execute(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_nested_statements = on;
             SET auto_explain.log_triggers = on;
             SET auto_explain.log_level = notice;
             SET client_min_messages = notice;",
        )
        .unwrap();
    (client, plans)
}

/// The statements whose plan reads a large table from end to end.
fn sequential_scans(plans: &[String]) -> Vec<String> {
    plans
        .iter()
        .filter(|plan| LARGE_TABLES.iter().any(|t| plan.contains(&format!("Seq Scan on {t} "))))
        .cloned()
        .collect()
}

#[test]
fn hot_path_statements_use_indexes_on_a_large_database() {
    let ch = cluster().add_channel("large");
    let mut client = cluster().connect();
    let id: i64 = client.query_one("SELECT id FROM wa_channels WHERE name = $1", &[&ch.name]).unwrap().get(0);
    // A year of traffic for this channel: contacts (some known only by BSUID), their messages,
    // conversations and statuses, then fresh statistics.
    client
        .execute(
            "INSERT INTO wa_contacts (channel_id, wa_id, user_id, profile_name, last_inbound_at)
             SELECT $1, CASE WHEN g % 10 <> 0 THEN (15550000000 + g)::text END, 'US.' || g, 'Customer ' || g, now() - interval '2 days'
               FROM generate_series(1, $2::bigint) g",
            &[&id, &CONTACTS],
        )
        .unwrap();
    client
        .execute(
            "INSERT INTO wa_messages (channel_id, contact_id, direction, wamid, type, body, status, payload, sent_at)
             SELECT $1, k.id, 'inbound', 'wamid.large.' || k.id || '.' || n, 'text', 'hello', 'received', '{}', now() - interval '2 days'
               FROM wa_contacts k CROSS JOIN generate_series(1, ($2::bigint / $3::bigint)::int) n WHERE k.channel_id = $1",
            &[&id, &MESSAGES, &CONTACTS],
        )
        .unwrap();
    client
        .execute(
            "INSERT INTO wa_message_statuses (channel_id, wamid, status, payload)
             SELECT $1, 'wamid.large.out.' || g, 'delivered', '{}' FROM generate_series(1, 100000) g",
            &[&id],
        )
        .unwrap();
    client.execute("SELECT _wa_rebuild_conversations($1)", &[&id]).unwrap();
    client
        .batch_execute("ANALYZE wa_contacts, wa_messages, wa_message_statuses, wa_conversation_state, wa_media")
        .unwrap();

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let (mut session, plans) = explained();
    for round in 0..7 {
        // The write path, as the listener calls it: a known sender, a new one, a BSUID-only
        // one, media, an edit and a revoke; statuses for a send and for an unknown wamid.
        let known = format!("{}", 15550000000i64 + 1 + round);
        let new = format!("{}", 16660000000i64 + round);
        let wamid = |k: &str| format!("wamid.plan.{round}.{k}");
        // (The sixth is written in a group.)
        let group = format!("R3JvdXBPZlBsYW5z{round}QUFB");
        session
            .execute(
                "SELECT _wa_receive_messages($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[
                    &vec![id; 6],
                    &vec![0i64; 6],
                    &vec![wamid("a"), wamid("b"), wamid("c"), wamid("d"), wamid("e"), wamid("g")],
                    &vec![Some(known.clone()), Some(new), None, Some(known.clone()), Some(known.clone()), Some(known.clone())],
                    &vec![None, None, Some(format!("US.{}", 10 * (round + 1))), None, None, None],
                    &vec![Some("Known".to_string()), Some("New".into()), Some("Bsuid".into()), None, None, None],
                    &vec![None::<String>; 6],
                    &vec!["text".to_string(), "image".into(), "text".into(), "edit".into(), "revoke".into(), "text".into()],
                    &vec![Some("hi".to_string()), None, Some("hey".into()), Some("fixed".into()), None, Some("hi all".into())],
                    &vec![Some(now); 6],
                    &vec![
                        serde_json::json!({"type": "text", "text": {"body": "hi"}}),
                        serde_json::json!({"type": "image", "image": {"id": "123", "mime_type": "image/jpeg", "sha256": "x"}}),
                        serde_json::json!({"type": "text", "text": {"body": "hey"}}),
                        serde_json::json!({"type": "edit", "edit": {"original_message_id": wamid("a")}}),
                        serde_json::json!({"type": "revoke", "revoke": {"original_message_id": format!("wamid.large.{}.1", 5 + round)}}),
                        serde_json::json!({"type": "text", "text": {"body": "hi all"}, "group_id": group}),
                    ],
                    &vec![None, None, None, None, None, Some(group.clone())],
                    // (no Flow replies: their answers and tokens)
                    &vec![None::<serde_json::Value>; 6],
                    &vec![None::<String>; 6],
                ],
            )
            .unwrap();
        session
            .execute(
                "SELECT _wa_receive_statuses($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                &[
                    &vec![id; 3],
                    &vec![
                        format!("wamid.large.out.{}", round + 1),
                        wamid("unknown"),
                        format!("wamid.large.out.{}", round + 1),
                    ],
                    &vec!["read".to_string(), "delivered".into(), "delivered".into()],
                    &vec![Some(now); 3],
                    &vec![Some(known.clone()), None, Some(group.clone())],
                    &vec![None::<i32>; 3],
                    &vec![None::<String>; 3],
                    &vec![None::<String>; 3],
                    &vec![serde_json::json!({}); 3],
                    &vec![Some("PMP".to_string()), None, None],
                    &vec![Some("regular".to_string()), None, None],
                    &vec![Some("utility".to_string()), None, None],
                    &vec![Some(true), None, None],
                    &vec![None, None, Some(known.clone())],
                    // (an outbox id, as our sends' statuses carry: looked up by primary key)
                    &vec![Some(1i64), None, None],
                ],
            )
            .unwrap();
        // A chunk of shared history: a customer's old message and the business's answer.
        session
            .execute(
                "SELECT _wa_receive_history($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &vec![id; 2],
                    &vec![wamid("h1"), wamid("h2")],
                    &vec![Some(known.clone()), Some(known.clone())],
                    &vec![false, true],
                    &vec!["text".to_string(), "text".into()],
                    &vec![Some("old question".to_string()), Some("old answer".into())],
                    &vec![Some(now - 86_400.0); 2],
                    &vec![Some("read".to_string()), Some("read".into())],
                    &vec![serde_json::json!({"type": "text", "text": {"body": "old"}}); 2],
                ],
            )
            .unwrap();
        // A reply to the group and the group's history.
        session.execute("SELECT wa_send_text($1, $2, 'noted')", &[&ch.name, &group]).unwrap();
        session
            .query(
                "SELECT * FROM wa_messages WHERE channel_id = $1 AND group_id = $2 ORDER BY id DESC LIMIT 50",
                &[&id, &group],
            )
            .unwrap();
        // The enqueue (its conversation trigger runs at COMMIT) and a read receipt.
        session.execute("SELECT wa_send_text($1, $2, 'on it')", &[&ch.name, &format!("+{known}")]).unwrap();
        session.execute("SELECT wa_mark_read($1, $2)", &[&ch.name, &wamid("a")]).unwrap();
        // The inbox's reads.
        session
            .query(
                "SELECT * FROM wa_conversations WHERE channel_id = $1 ORDER BY last_message_at DESC NULLS LAST LIMIT 50",
                &[&id],
            )
            .unwrap();
        session
            .query(
                "SELECT contact_id, unread_count FROM wa_conversations WHERE channel_id = $1 AND unread_count > 0
                  ORDER BY last_message_at DESC NULLS LAST LIMIT 50",
                &[&id],
            )
            .unwrap();
        // Every channel's conversations, newest first (no channel filter).
        session.query("SELECT * FROM wa_conversations ORDER BY last_message_at DESC NULLS LAST LIMIT 50", &[]).unwrap();
        session
            .query(
                "SELECT * FROM wa_messages WHERE contact_id = (SELECT id FROM wa_contacts WHERE channel_id = $1 AND wa_id = $2)
                  ORDER BY id DESC LIMIT 50",
                &[&id, &known],
            )
            .unwrap();
    }
    // Leave nothing for the delivery worker to send to the simulator.
    client
        .execute("UPDATE wa_messages SET status = 'failed' WHERE channel_id = $1 AND status = 'queued'", &[&id])
        .unwrap();

    let plans = plans.lock().unwrap();
    assert!(plans.len() > 100, "auto_explain printed {} plans: is it loaded?", plans.len());
    assert!(
        plans.iter().any(|p| p.contains("wa_contacts_channel_id_wa_id_key")),
        "the plans never use the contacts' wa_id index: are the write path's statements explained?"
    );
    let scans = sequential_scans(&plans);
    assert!(
        scans.is_empty(),
        "{} hot-path plans read a large table sequentially:\n{}",
        scans.len(),
        scans.join("\n---\n")
    );
}
