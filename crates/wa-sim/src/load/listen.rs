//! The LISTEN thread: one `LISTEN wa_message` connection that timestamps every notification,
//! on the clock the clients' POSTs are timed by.

use super::micros;
use postgres::fallible_iterator::FallibleIterator;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Holds `LISTEN wa_message` and timestamps each notification's message id (µs since `epoch`),
/// until the clients are done and no notification came for 500 ms (at most 5 s after that, or
/// `hard_stop`).
pub(super) fn listen(
    dsn: &str,
    epoch: Instant,
    clients_done: &AtomicBool,
    hard_stop: Instant,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<Vec<(i64, u64)>, String> {
    let mut client = match postgres::Client::connect(dsn, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            let e = format!("connecting to {dsn}: {e}");
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    if let Err(e) = client.batch_execute("LISTEN wa_message") {
        let _ = ready.send(Err(format!("LISTEN wa_message: {e}")));
        return Err(e.to_string());
    }
    let _ = ready.send(Ok(()));
    let mut seen = Vec::new();
    let mut done_at: Option<Instant> = None;
    let mut last_arrival = Instant::now();
    while Instant::now() < hard_stop {
        if done_at.is_none() && clients_done.load(Ordering::SeqCst) {
            done_at = Some(Instant::now());
        }
        if let Some(done) = done_at
            && (last_arrival.max(done).elapsed() >= Duration::from_millis(500)
                || done.elapsed() >= Duration::from_secs(5))
        {
            break;
        }
        let mut notifications = client.notifications();
        let mut iter = notifications.timeout_iter(Duration::from_millis(100));
        // Bounded: stop to look at the flags at least every 4,096 notifications.
        for _ in 0..4096 {
            match iter.next() {
                Ok(Some(n)) => {
                    let arrived = Instant::now();
                    last_arrival = arrived;
                    let payload: serde_json::Value = serde_json::from_str(n.payload()).unwrap_or_default();
                    if let Some(id) = payload["id"].as_i64() {
                        seen.push((id, micros(arrived - epoch)));
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(format!("LISTEN connection: {e}")),
            }
        }
    }
    Ok(seen)
}
