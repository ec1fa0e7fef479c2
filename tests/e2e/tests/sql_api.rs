//! The SQL interface: validation errors that name the field, recipient normalisation,
//! wa_verify_signature, wa_webhook_url, and who may read the secrets.

use e2e::cluster;

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
         GRANT EXECUTE ON FUNCTION wa_send_text(text, text, text, text, boolean, text, timestamptz) TO inbox_app;",
    )
    .unwrap();
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
            "wa_error_hint(integer)",
            "wa_normalize_phone(text)",
            "wa_normalize_recipient(text)",
            "wa_verify_signature(text,bytea,text)",
            "wa_verify_signature(text,text,text)",
            "wa_webhook_url(text)",
        ],
        "functions PUBLIC may execute (sql/privileges.sql is the allow-list)"
    );
}
