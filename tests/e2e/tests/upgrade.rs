//! Upgrades: a database created at each released version (its frozen script in sql/released/)
//! with data in it, upgraded by `ALTER EXTENSION whatsapp_channel UPDATE` with the current
//! library, keeps every row and ends with exactly the catalog a fresh `CREATE EXTENSION` gives.
//! Until the upgrade the workers wait (the library refuses to run on a schema of another
//! version), so webhooks posted meanwhile get 503, which Meta retries, and queued messages
//! stay queued; after it they go through.

use e2e::{Channel, Cluster, poll, wa_sim};
use postgres::Client;
use std::path::Path;

/// The versions released so far, oldest first, from the frozen scripts in sql/released/.
fn released_versions() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/released");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_prefix("whatsapp_channel--")?.strip_suffix(".sql")?.to_string())
        })
        .collect();
    versions.sort_by_key(|v| v.split('.').map(|n| n.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>());
    assert!(!versions.is_empty(), "no released version in {}", dir.display());
    versions
}

/// Everything about the extension's objects that a user or the workers depend on, one line
/// each, sorted, without OIDs. Column order is left out: an upgrade can only add columns at
/// the end, so a fresh install is allowed to order them differently.
const CATALOG: &str = r#"
WITH ext AS (SELECT e.oid, e.extnamespace AS nsp FROM pg_extension e WHERE e.extname = 'whatsapp_channel'),
rels AS (SELECT c.* FROM pg_class c, ext WHERE c.relnamespace = ext.nsp)
SELECT line FROM (
    SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
      FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
    UNION ALL
    SELECT format('relation %s kind=%s options=%s acl=%s rls=%s force_rls=%s', relname, relkind, reloptions,
                  (SELECT array_agg(a::text ORDER BY a::text)
                     FROM unnest(coalesce(relacl, acldefault(CASE relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", relowner))) a),
                  relrowsecurity, relforcerowsecurity)
      FROM rels
    UNION ALL
    SELECT format('policy %s.%s cmd=%s permissive=%s roles=%s using=%s check=%s', r.relname, p.polname, p.polcmd,
                  p.polpermissive, p.polroles::regrole[], pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
      FROM pg_policy p JOIN rels r ON r.oid = p.polrelid
    UNION ALL
    SELECT format('enum %s %s', t.typname, (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
      FROM pg_type t, ext WHERE t.typnamespace = ext.nsp AND t.typtype = 'e'

    UNION ALL
    SELECT format('column %s.%s %s notnull=%s default=%s identity=%s generated=%s collation=%s',
                  r.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated, a.attcollation::regcollation)
      FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN rels r ON r.oid = i.indrelid
    UNION ALL
    SELECT format('constraint %s.%s %s', r.relname, c.conname, pg_get_constraintdef(c.oid))
      FROM pg_constraint c JOIN rels r ON r.oid = c.conrelid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
    UNION ALL
    SELECT format('view %s %s', r.relname, pg_get_viewdef(r.oid)) FROM rels r WHERE r.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('function %s returns %s volatile=%s strict=%s secdef=%s parallel=%s config=%s acl=%s body=%s',
                  p.oid::regprocedure, pg_get_function_result(p.oid), p.provolatile, p.proisstrict, p.prosecdef,
                  p.proparallel, p.proconfig, (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(p.proacl) a),
                  md5(p.prosrc || coalesce(p.probin, '')))
      FROM pg_proc p, ext WHERE p.pronamespace = ext.nsp
    UNION ALL
    SELECT format('sequence %s %s %s %s %s', s.seqrelid::regclass, s.seqtypid::regtype, s.seqincrement, s.seqmin, s.seqmax)
      FROM pg_sequence s JOIN rels r ON r.oid = s.seqrelid
    UNION ALL
    SELECT format('dumped %s where %L', u.rel::regclass, u.cond)
      FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(rel, cond) WHERE e.extname = 'whatsapp_channel'
    UNION ALL
    SELECT format('comment %s %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), md5(d.description))
      FROM pg_description d JOIN pg_depend m ON m.classid = d.classoid AND m.objid = d.objoid, ext
     WHERE m.refobjid = ext.oid AND m.deptype = 'e'
) lines(line)
ORDER BY line
"#;

fn catalog(db: &mut Client) -> Vec<String> {
    db.query(CATALOG, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// Row counts of every table of the extension, by name.
fn row_counts(db: &mut Client) -> Vec<(String, i64)> {
    let tables: Vec<String> = db
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_extension e ON e.extnamespace = c.relnamespace
              WHERE e.extname = 'whatsapp_channel' AND c.relkind = 'r' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let n: i64 = db.query_one(&format!("SELECT count(*) FROM {}", postgres_ident(&t)), &[]).unwrap().get(0);
            (t, n)
        })
        .collect()
}

fn postgres_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn text_webhook(ch: &Channel, wamid: &str) -> serde_json::Value {
    wa_sim::payloads::text_message(
        &ch.phone_number_id,
        wamid,
        "15550001111",
        "Upgrading customer",
        "hello",
        1_760_000_000,
    )
}

#[test]
fn every_release_upgrades_to_the_current_schema_keeping_its_data() {
    for release in released_versions() {
        assert!(
            Cluster::extension_file(&format!("whatsapp_channel--{release}.sql")).exists(),
            "the frozen script of {release} is not installed: scripts/test.sh copies sql/released/ into the extension directory"
        );
        let cluster = Cluster::private_at_version(&release);
        let mut db = cluster.connect();
        let current: String = db
            .query_one("SELECT default_version FROM pg_available_extensions WHERE name = 'whatsapp_channel'", &[])
            .unwrap()
            .get(0);
        let installed: String =
            db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'whatsapp_channel'", &[]).unwrap().get(0);
        assert_eq!(installed, release);

        // Data, through the released schema's own functions: a channel, an approved template
        // and messages queued to customers.
        let ch = cluster.add_channel("upgrade");
        db.execute(
            "INSERT INTO wa_templates (channel_id, name, language, status, category, components)
             SELECT id, 'order_update', 'en_US', 'APPROVED', 'UTILITY', '[{\"type\": \"BODY\", \"text\": \"Your order has shipped\"}]'
               FROM wa_channels WHERE name = $1",
            &[&ch.name],
        )
        .unwrap();
        let queued: Vec<i64> = (0..3)
            .map(|i| {
                db.query_one(
                    "SELECT wa_send_template($1, $2, 'order_update', 'en_US')",
                    &[&ch.name, &format!("1555000{i:04}")],
                )
                .unwrap()
                .get(0)
            })
            .collect();

        // Roles granted the API before channels were granted one by one: an inbox that sends,
        // a reader, an administrator of tokens.
        db.batch_execute(
            "CREATE ROLE upgrade_inbox; CREATE ROLE upgrade_reader; CREATE ROLE upgrade_admin;
             GRANT SELECT ON wa_messages TO upgrade_inbox, upgrade_reader;
             GRANT EXECUTE ON FUNCTION wa_send_text TO upgrade_inbox;
             GRANT EXECUTE ON FUNCTION wa_set_access_token TO upgrade_admin;",
        )
        .unwrap();

        // A webhook while the schema is older than the library: refused with 503, not lost.
        let before = ch.post_signed_to(&cluster, &text_webhook(&ch, "wamid.upgrade.during")).unwrap();
        assert_eq!(before.status, 503, "the listener must not store into a schema of another version: {before:?}");
        cluster.wait_for_log("the workers wait until the schema matches");
        let counts_before = row_counts(&mut db);

        db.batch_execute("ALTER EXTENSION whatsapp_channel UPDATE").unwrap();
        let upgraded: String =
            db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'whatsapp_channel'", &[]).unwrap().get(0);
        assert_eq!(upgraded, current, "ALTER EXTENSION UPDATE from {release}");
        // Every table of the release keeps its rows; a table the upgrade adds starts empty.
        let (kept, added): (Vec<_>, Vec<_>) =
            row_counts(&mut db).into_iter().partition(|(table, _)| counts_before.iter().any(|(t, _)| t == table));
        assert_eq!(kept, counts_before, "rows changed by the upgrade from {release}");
        assert!(
            added.iter().all(|(table, n)| *n == 0 || table == "wa_channel_grants"),
            "a table added by the upgrade from {release} has rows: {added:?}"
        );
        // ... but for the grants that keep what each role could do (README, "Roles").
        let access: Vec<(Option<String>, String, String)> = db
            .query("SELECT channel, role, privilege::text FROM wa_channel_access ORDER BY role", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let grant = |channel: Option<&str>, role: &str, privilege: &str| {
            (channel.map(String::from), role.to_string(), privilege.to_string())
        };
        assert_eq!(
            access,
            [
                grant(None, "upgrade_admin", "admin"),
                grant(Some(&ch.name), "upgrade_inbox", "send"),
                grant(Some(&ch.name), "upgrade_reader", "read")
            ],
            "the grants made by the upgrade from {release}"
        );
        let all_messages: i64 = db.query_one("SELECT count(*) FROM wa_messages", &[]).unwrap().get(0);
        db.batch_execute("SET ROLE upgrade_reader").unwrap();
        let seen: i64 = db.query_one("SELECT count(*) FROM wa_messages", &[]).unwrap().get(0);
        db.batch_execute("RESET ROLE").unwrap();
        assert_eq!((seen, all_messages > 0), (all_messages, true), "a reader after the upgrade from {release}");

        // Meta retries the refused webhook: now it is stored. The queued messages go out.
        let stored = poll(|| {
            let answer = ch.post_signed_to(&cluster, &text_webhook(&ch, "wamid.upgrade.during")).ok()?;
            (answer.status == 200).then_some(())
        });
        assert!(stored.is_some(), "the listener did not resume after the upgrade from {release}:\n{}", cluster.log());
        let sent = poll(|| {
            let n: i64 = db
                .query_one("SELECT count(*) FROM wa_messages WHERE id = ANY($1) AND status = 'sent'", &[&queued])
                .unwrap()
                .get(0);
            (n == queued.len() as i64).then_some(())
        });
        assert!(sent.is_some(), "messages queued before the upgrade from {release} were not sent:\n{}", cluster.log());

        // The upgraded catalog is the one a fresh CREATE EXTENSION gives (without the roles'
        // own privileges, which a fresh one does not have).
        db.batch_execute("DROP OWNED BY upgrade_inbox, upgrade_reader, upgrade_admin").unwrap();
        db.batch_execute("CREATE DATABASE fresh").unwrap();
        let mut fresh = cluster.connect_to("fresh");
        fresh.batch_execute("CREATE EXTENSION whatsapp_channel").unwrap();
        let (upgraded, created) = (catalog(&mut db), catalog(&mut fresh));
        let only_upgraded: Vec<&String> = upgraded.iter().filter(|l| !created.contains(l)).collect();
        let only_created: Vec<&String> = created.iter().filter(|l| !upgraded.contains(l)).collect();
        assert!(
            only_upgraded.is_empty() && only_created.is_empty(),
            "the schema upgraded from {release} differs from a fresh {current}:\n only after the upgrade: {only_upgraded:#?}\n only when created: {only_created:#?}\n\
             Write what changed into sql/whatsapp_channel--<previous>--{current}.sql"
        );
    }
}
