//! What the benchmark asks the database: the setting it points at the mock and puts back, the
//! `bench_out` channels' messages, and when the worker has recorded their answers.

use super::{CHANNEL, SETTING};
use std::time::{Duration, Instant};

/// Puts `whatsapp_channel.graph_api_url` back when dropped (also on error or panic).
pub(super) struct Restore {
    pub(super) dsn: String,
    /// The previous ALTER SYSTEM value; `None`: there was none, so RESET.
    pub(super) previous: Option<String>,
}

impl Restore {
    fn restore(&self) -> Result<(), String> {
        let mut client = connect(&self.dsn)?;
        let statement = match &self.previous {
            Some(v) => format!("ALTER SYSTEM SET {SETTING} = {}", literal(v)),
            None => format!("ALTER SYSTEM RESET {SETTING}"),
        };
        client.batch_execute(&statement).map_err(|e| format!("{statement}: {e}"))?;
        client.batch_execute("SELECT pg_reload_conf()").map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        match self.restore() {
            Ok(()) => eprintln!(
                "wa-sim outbound-bench: {SETTING} restored ({})",
                self.previous.as_deref().map_or("ALTER SYSTEM RESET".to_string(), |v| format!("'{v}'"))
            ),
            Err(e) => eprintln!("wa-sim outbound-bench: could not restore {SETTING}: {e}; do it by hand"),
        }
    }
}

pub(super) fn connect(dsn: &str) -> Result<postgres::Client, String> {
    postgres::Client::connect(dsn, postgres::NoTls).map_err(|e| format!("connecting to {dsn}: {e}"))
}

pub(super) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(super) fn db<T>(what: &str, r: Result<T, postgres::Error>) -> Result<T, String> {
    r.map_err(|e| match e.as_db_error() {
        Some(d) => format!("{what}: {}", d.message()),
        None => format!("{what}: {e}"),
    })
}

/// The ids of the benchmark's channels. The queries below filter on them rather than join by
/// name: with channel ids the planner knows these channels' rows are few (an index scan of
/// `UNIQUE (channel_id, wamid)`); joined by name it plans for an average channel, which on a
/// database holding millions of another channel's messages is a scan of all of them, every
/// 100 ms while the benchmark waits.
fn channel_ids(client: &mut postgres::Client) -> Result<Vec<i64>, String> {
    let rows = db(
        "reading the bench_out channels",
        client.query("SELECT id FROM wa_channels WHERE name = $1 OR name LIKE $1 || '\\_%'", &[&CHANNEL]),
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(super) fn delete_messages(client: &mut postgres::Client) -> Result<(), String> {
    let ids = channel_ids(client)?;
    db("deleting bench_out messages", client.execute("DELETE FROM wa_messages WHERE channel_id = ANY($1)", &[&ids]))?;
    Ok(())
}

/// Waits (bounded) until no message of the channels is queued or sending; returns `status: count`.
pub(super) fn wait_recorded(client: &mut postgres::Client, timeout: Duration) -> Result<String, String> {
    let ids = channel_ids(client)?;
    let deadline = Instant::now() + timeout;
    loop {
        let rows = db(
            "counting statuses",
            client.query(
                "SELECT status, count(*) FROM wa_messages WHERE channel_id = ANY($1) GROUP BY 1 ORDER BY 1",
                &[&ids],
            ),
        )?;
        let pending = rows.iter().any(|r| matches!(r.get::<_, &str>(0), "queued" | "sending"));
        if !pending || Instant::now() >= deadline {
            let summary: Vec<String> =
                rows.iter().map(|r| format!("{} {}", r.get::<_, &str>(0), r.get::<_, i64>(1))).collect();
            return Ok(if summary.is_empty() { "none".into() } else { summary.join(", ") });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(literal("a'b"), "'a''b'");
    }
}
