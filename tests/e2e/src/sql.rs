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

/// A connection that LISTENs on `channels`, for tests that must see notifications arrive.
pub struct Listener {
    client: Client,
}

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
            if pred(n.channel(), &payload) {
                return Some((n.channel().to_string(), payload));
            }
        }
    }
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
