//! The SQL interface: validation errors that name the field, recipient normalisation,
//! wa_verify_signature, wa_webhook_url, and who may read the secrets.

use e2e::cluster;
use e2e::wa_sim::payloads::{self, Customer, MESSAGE_KINDS};

fn error_of(sql: &str) -> (String, String) {
    e2e::error_of(sql, &[])
}

#[test]
fn wa_add_channel_names_the_field_that_is_wrong() {
    let (msg, hint) =
        error_of("SELECT wa_add_channel('sql-a', '123', 'EAAGtokentokentoken', 'EAAGtokentokentoken', 'verify')");
    assert!(msg.contains("invalid app_secret"), "{msg}");
    assert!(hint.contains("Settings -> Basic"), "{hint}");
    let (msg, _) = error_of(
        "SELECT wa_add_channel('Bad Name', '123', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'verify')",
    );
    assert!(msg.contains("invalid name"), "{msg}");
    let (msg, hint) = error_of(
        "SELECT wa_add_channel('sql-b', '+1 555', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'verify')",
    );
    assert!(msg.contains("invalid phone_number_id"), "{msg}");
    assert!(hint.contains("API Setup"), "{hint}");
}

#[test]
fn a_second_channel_with_the_same_name_is_refused_clearly() {
    let ch = cluster().add_channel("dup");
    let (msg, _) = error_of(&format!(
        "SELECT wa_add_channel('{}', '999999999', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'verify')",
        ch.name
    ));
    assert_eq!(msg, "a channel with this name already exists");
}

#[test]
fn wa_send_text_normalises_the_recipient_or_refuses_it() {
    let ch = cluster().add_channel("norm");
    ch.customer_writes("15551234567");
    let mut db = cluster().connect();
    let mut tx = db.transaction().unwrap();
    for input in ["15551234567", "+1 555-123-4567", "+1 (555) 123-4567"] {
        let id: i64 = tx.query_one("SELECT wa_send_text($1, $2, 'x')", &[&ch.name, &input]).unwrap().get(0);
        let to: String = tx.query_one("SELECT recipient FROM wa_messages WHERE id = $1", &[&id]).unwrap().get(0);
        assert_eq!(to, "+15551234567", "{input}");
    }
    tx.rollback().unwrap();
    let (msg, hint) = error_of(&format!("SELECT wa_send_text('{}', 'not a number', 'x')", ch.name));
    assert!(msg.contains("is not a phone number"), "{msg}");
    assert!(hint.contains("country code"), "{hint}");
    let (msg, _) = error_of("SELECT wa_send_text('no-such-channel', '15551234567', 'x')");
    assert!(msg.contains("unknown channel 'no-such-channel'"), "{msg}");
    let (msg, _) = error_of(&format!("SELECT wa_send_text('{}', '15551234567', repeat('a', 4097))", ch.name));
    assert!(msg.contains("at most 4096"), "{msg}");
}

#[test]
fn wa_verify_signature_matches_the_listeners_check() {
    let mut db = cluster().connect();
    let body = r#"{"object":"whatsapp_business_account"}"#;
    let good = e2e::whatsapp_cloud::signature::sign(b"0123456789abcdef0123456789abcdef", body.as_bytes());
    let row = db
        .query_one(
            "SELECT wa_verify_signature('0123456789abcdef0123456789abcdef', $1::text::bytea, $2),
                    wa_verify_signature('0123456789abcdef0123456789abcdef', $1::text, $2),
                    wa_verify_signature('ffffffffffffffffffffffffffffffff', $1::text, $2),
                    wa_verify_signature('0123456789abcdef0123456789abcdef', $1::text, NULL)",
            &[&body, &good],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, bool>(2), row.get::<_, bool>(3)),
        (true, true, false, false)
    );
}

#[test]
fn wa_webhook_url_is_per_channel_and_uses_public_url() {
    let ch = cluster().add_channel("url");
    let mut db = cluster().connect();
    let local: String = db.query_one("SELECT wa_webhook_url($1)", &[&ch.name]).unwrap().get(0);
    assert_eq!(local, cluster().webhook_url(&ch.name));
    db.batch_execute("SET whatsapp_channel.public_url = 'https://inbox.example.com/'").unwrap();
    let public: String = db.query_one("SELECT wa_webhook_url($1)", &[&ch.name]).unwrap().get(0);
    assert_eq!(public, format!("https://inbox.example.com/webhook/{}", ch.name));
}

#[test]
fn secrets_are_not_readable_by_other_roles_and_an_inbox_role_can_still_send() {
    let ch = cluster().add_channel("roles");
    ch.customer_writes("15551234567");
    let mut db = cluster().connect();
    db.batch_execute(
        "DO $$ BEGIN CREATE ROLE inbox_app; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT SELECT ON wa_channels, wa_contacts, wa_messages TO inbox_app;
         GRANT EXECUTE ON FUNCTION wa_send_text(text, text, text, text, boolean, text, timestamptz, timestamptz) TO inbox_app;",
    )
    .unwrap();
    // EXECUTE alone is not enough: the channel must be granted (README, "Roles").
    let mut tx = db.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE inbox_app").unwrap();
    let err = tx.query_one("SELECT wa_send_text($1, '15551234567', 'from the inbox')", &[&ch.name]).unwrap_err();
    assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    tx.rollback().unwrap();
    db.execute("SELECT wa_grant_channel($1, 'inbox_app')", &[&ch.name]).unwrap();
    let mut tx = db.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE inbox_app").unwrap();
    let id: i64 = tx.query_one("SELECT wa_send_text($1, '15551234567', 'from the inbox')", &[&ch.name]).unwrap().get(0);
    assert!(id > 0);
    let err = tx.batch_execute("SELECT access_token FROM wa_channel_secrets").unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("permission denied"), "{err}");
    tx.rollback().unwrap();
    let mut tx = db.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE inbox_app").unwrap();
    let err = tx
        .batch_execute(
            "SELECT wa_add_channel('x', '1', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v')",
        )
        .unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("permission denied"), "{err}");
}

#[test]
fn public_may_call_only_the_pure_helpers() {
    let mut db = cluster().connect();
    let rows = db
        .query(
            "SELECT p.oid::regprocedure::text
               FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
              WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'whatsapp_channel')
                AND has_function_privilege('public', p.oid, 'EXECUTE')
              ORDER BY 1",
            &[],
        )
        .unwrap();
    let callable: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        callable,
        [
            "_wa_channels_visible_to(name)",
            "_wa_is_admin(name)",
            "_wa_visible_channels()",
            "_wa_visible_channels(text)",
            "wa_error_hint(integer)",
            "wa_normalize_phone(text)",
            "wa_normalize_recipient(text)",
            "wa_verify_signature(text,bytea,text)",
            "wa_verify_signature(text,text,text)",
        ],
        "functions PUBLIC may execute (sql/privileges.sql is the allow-list)"
    );
}

/// The columns of wa_messages derived from a message's payload are declared once, as the type
/// _wa_message_derived (sql/schema.sql) that the table takes with LIKE and _wa_message_columns()
/// (sql/model.sql) returns; every writer inserts the function's result by position under the
/// table's names. So the two must agree, name for name and type for type, and a message stored by each writer (an inbound message of every kind; a text, which
/// _wa_enqueue derives apart; the other sends) must hold under each name what the function
/// derives from it: a list reordered or changed on one side only fails here.
#[test]
fn the_derived_message_columns_are_one_list_for_the_table_and_every_writer() {
    let mut db = cluster().connect();
    let missing: Vec<String> = db
        .query(
            "SELECT a.name || ' ' || format_type(a.typ, NULL)
               FROM pg_proc p,
                    unnest(p.proargnames, p.proallargtypes, p.proargmodes) AS a(name, typ, mode)
              WHERE p.oid = '_wa_message_columns'::regproc AND a.mode = 't'
                AND NOT EXISTS (SELECT 1 FROM pg_attribute t
                                 WHERE t.attrelid = 'wa_messages'::regclass AND NOT t.attisdropped
                                   AND t.attname = a.name AND t.atttypid = a.typ)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(missing.is_empty(), "derived by _wa_message_columns() but not columns of wa_messages: {missing:?}");

    let ch = cluster().add_channel("derived");
    let from = Customer { wa_id: "16505558002".into(), name: "Lee".into() };
    let values: Vec<_> = MESSAGE_KINDS
        .iter()
        .map(|k| payloads::message_value(k, &format!("wamid.derived.{k}"), &from, "hello", 1749416383).unwrap())
        .collect();
    assert_eq!(ch.post_signed(&payloads::batch(&ch.phone_number_id, values)).status, 200);
    let hello = ch.customer_writes("16505558002"); // (now: the kinds above were written long ago)
    db.execute(
        "SELECT wa_send_text($1, '+16505558002', 'hi', reply_to => $2),
                wa_send_media($1, '+16505558002', 'document', 'https://example.com/a.pdf', 'see', 'a.pdf'),
                wa_send_location($1, '+16505558002', 52.5, 13.4, 'Office', 'Street 1'),
                wa_send_reaction($1, $2, '👍')",
        &[&ch.name, &hello],
    )
    .unwrap();
    let rows = db
        .query(
            "SELECT m.direction, m.type, to_jsonb(m) @> to_jsonb(d)
               FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id
              CROSS JOIN LATERAL _wa_message_columns(m.type, m.payload) d
              WHERE c.name = $1 ORDER BY m.id",
            &[&ch.name],
        )
        .unwrap();
    assert_eq!(rows.len(), MESSAGE_KINDS.len() + 5, "every message stored");
    let wrong: Vec<String> = rows
        .iter()
        .filter(|r| !r.get::<_, bool>(2))
        .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    assert!(wrong.is_empty(), "stored derived columns differ from _wa_message_columns(): {wrong:?}");
}
