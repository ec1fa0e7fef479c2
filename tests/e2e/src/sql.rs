//! Connections to a cluster and the SQL helpers tests share: errors, LISTEN, digests of the
//! extension's tables, messages not yet sent.

use crate::poll::DEADLINE;
use crate::{Cluster, cluster, poll};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::time::Instant;

impl Cluster {
    /// A connection once the server accepts them again (after a crash).
    pub fn connect_when_up(&self) -> Client {
        poll(|| Client::connect(&self.dsn(), NoTls).ok()).expect("the server accepts connections again")
    }

    /// libpq connection string of the test database (superuser `postgres`, unix socket).
    pub fn dsn(&self) -> String {
        format!("host={} port={} user=postgres dbname=postgres", self.dir.display(), self.port)
    }

    /// A new connection as the superuser `postgres`.
    pub fn connect(&self) -> Client {
        Client::connect(&self.dsn(), NoTls).unwrap()
    }

    /// A new connection to another database of this cluster.
    pub fn connect_to(&self, database: &str) -> Client {
        Client::connect(
            &format!("host={} port={} user=postgres dbname={database}", self.dir.display(), self.port),
            NoTls,
        )
        .unwrap()
    }
}

/// Runs `sql` on the shared cluster, expecting an ERROR: its message and hint.
pub fn error_of(sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> (String, String) {
    let e = cluster().connect().query(sql, params).unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("not a database error: {e}"));
    (db.message().to_string(), db.hint().unwrap_or_default().to_string())
}

/// The keys each notification of the extension carries: ids only, since LISTEN needs no
/// privilege (README, "Notifications"). Every other key, and every value that is not an
/// integer or null, is a leak to whoever listens.
pub const NOTIFICATION_KEYS: [(&str, &[&str]); 9] = [
    ("wa_message", &["id", "channel_id", "contact_id"]),
    ("wa_status", &["id", "channel_id"]),
    ("wa_media", &["message_id", "channel_id"]),
    ("wa_call", &["id", "channel_id", "contact_id"]),
    ("wa_group", &["channel_id"]),
    ("wa_history", &["channel_id"]),
    ("wa_contact", &["id", "channel_id"]),
    ("wa_channel_event", &["id", "channel_id"]),
    ("wa_action", &["id", "channel_id"]),
];

/// What is wrong with a notification of the extension on `channel` (None: nothing): a key
/// other than its ids, a missing key, or a value that is not an integer (or null).
pub fn notification_problem(channel: &str, payload: &serde_json::Value) -> Option<String> {
    let (_, keys) = NOTIFICATION_KEYS.iter().find(|(c, _)| *c == channel)?;
    let Some(object) = payload.as_object() else {
        return Some(format!("{channel}: not a JSON object: {payload}"));
    };
    let mut got: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut want = keys.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    if got != want {
        return Some(format!("{channel}: keys {got:?}, expected exactly {want:?}: {payload}"));
    }
    let not_ids: Vec<&String> = object.iter().filter(|(_, v)| !(v.is_i64() || v.is_null())).map(|(k, _)| k).collect();
    (!not_ids.is_empty()).then(|| format!("{channel}: {not_ids:?} not integers or null: {payload}"))
}

/// A connection that LISTENs on `channels`, for tests that must see notifications arrive.
/// Every notification of the extension it reads must carry ids only ([`notification_problem`]).
pub struct Listener {
    client: Client,
}

/// The channel [`Listener::drain_all`] notifies itself on, to know it has read everything before.
const DRAINED: &str = "e2e_drained";

impl Listener {
    pub fn new(channels: &[&str]) -> Listener {
        let mut client = cluster().connect();
        for c in channels {
            client.batch_execute(&format!("LISTEN {c}")).unwrap();
        }
        Listener { client }
    }

    /// The next notification whose payload satisfies `pred`, as (channel, payload JSON).
    pub fn next_matching(
        &mut self,
        pred: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> Option<(String, serde_json::Value)> {
        let deadline = Instant::now() + DEADLINE;
        let mut notifications = self.client.notifications();
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let n = notifications.timeout_iter(left).next().ok()??;
            let payload: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
            if let Some(problem) = notification_problem(n.channel(), &payload) {
                panic!("a notification says more than ids: {problem}");
            }
            if pred(n.channel(), &payload) {
                return Some((n.channel().to_string(), payload));
            }
        }
    }

    /// Every notification committed before this call and not read yet, in order, as
    /// (channel, payload): it notifies itself and reads up to that (Postgres delivers in
    /// commit order).
    pub fn drain_all(&mut self) -> Vec<(String, serde_json::Value)> {
        self.client.batch_execute(&format!("LISTEN {DRAINED}")).unwrap();
        // (Other tests' listeners drain too: the marker names this session.)
        let marker: serde_json::Value = self
            .client
            .query_one(
                "SELECT pg_notify($1, m::text), m FROM json_build_object('drained_by', pg_backend_pid()) m",
                &[&DRAINED],
            )
            .unwrap()
            .get(1);
        let mut got = Vec::new();
        while let Some((c, p)) = self.next_matching(|_, _| true) {
            match c == DRAINED {
                true if p == marker => return got,
                true => {} // another session's
                false => got.push((c, p)),
            }
        }
        panic!("{DRAINED}: the notification a drain sends itself did not arrive within {DEADLINE:?}");
    }

    /// The same, only the payloads on `channel`.
    pub fn drain(&mut self, channel: &str) -> Vec<serde_json::Value> {
        self.drain_all().into_iter().filter(|(c, _)| c == channel).map(|(_, p)| p).collect()
    }
}

/// Waits until the listener has written its counts of the POSTs stored so far into
/// `wa_channel_counters` (it writes them at most once a second, and when it stops): a digest
/// taken before that would differ from one taken after, with nothing lost in between.
pub fn counts_written(db: &mut Client) {
    let written = poll(|| {
        let unwritten: i64 = db
            .query_one(
                "SELECT count(*) FROM (
                   SELECT channel_id, outcome, count(*) FROM wa_webhook_events WHERE channel_id IS NOT NULL GROUP BY 1, 2
                   EXCEPT
                   SELECT channel_id, kind, count FROM wa_channel_counters
                    WHERE kind IN ('stored', 'partial', 'invalid_payload', 'incomplete')) AS x",
                &[],
            )
            .unwrap()
            .get(0);
        (unwritten == 0).then_some(())
    });
    assert!(written.is_some(), "the listener did not write its counts of the stored POSTs within {DEADLINE:?}");
}

/// Every table of the extension that pg_dump keeps (its configuration tables), with its row
/// count and a digest of its rows: equal digests, equal contents.
pub fn table_digests(db: &mut Client) -> Vec<(String, i64, String)> {
    let tables: Vec<String> = db
        .query(
            "SELECT c.relname::text FROM pg_extension e, unnest(e.extconfig) AS u(rel) JOIN pg_class c ON c.oid = u.rel
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
            let row = db
                .query_one(
                    &format!(
                        "SELECT count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM {t} x"
                    ),
                    &[],
                )
                .unwrap();
            (t, row.get(0), row.get(1))
        })
        .collect()
}

/// How many of the messages `ids` are not (yet) sent: neither sent, delivered nor read.
pub fn unsent(db: &mut Client, ids: &[i64]) -> i64 {
    db.query_one(
        "SELECT count(*) FROM wa_messages WHERE id = ANY($1) AND status NOT IN ('sent', 'delivered', 'read')",
        &[&ids],
    )
    .unwrap()
    .get(0)
}
