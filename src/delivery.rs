//! The delivery worker: sends queued outbound messages. Woken at the commit of a transaction
//! that queued messages ([`crate::wake`]), and by its own timer for retries that fall due.
//!
//! Each round: claim due messages (status `sending`) and COMMIT; send them concurrently with
//! no transaction open; record each result in its own subtransaction and COMMIT. A crash
//! between the two commits leaves rows in `sending`, which go back to the queue at start: the
//! only window in which a message can be sent twice.

use crate::graph_client::{GraphClient, SendResult};
use crate::store::{self, Claimed};
use crate::{guc, subtransaction, wake};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use whatsapp_cloud::graph_api::{self, GraphError, Retry, SendOutcome};

/// Most messages claimed (and sent concurrently) per round.
const BATCH: i32 = 64;
/// Longest sleep when nothing is due: a safety net for rows queued without a wake.
const IDLE: Duration = Duration::from_secs(10);

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn wa_delivery_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = guc::string(&guc::DATABASE, "postgres");
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    wake::register_delivery_worker();
    log!("whatsapp_channel: delivery worker started, database \"{database}\"");

    let mut client = GraphClient::new(timeout());
    let mut recovered = false;
    let mut wait = Duration::ZERO;
    while BackgroundWorker::wait_latch(Some(wait)) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            client = GraphClient::new(timeout());
        }
        // Cleared before looking, so a commit from now on sets the latch again.
        wake::take_pending_wake();
        let base_url = guc::string(&guc::GRAPH_API_URL, "https://graph.facebook.com");
        let version = guc::string(&guc::GRAPH_API_VERSION, "v25.0");
        let claimed = BackgroundWorker::transaction(|| {
            if !store::use_extension_schema() {
                return None;
            }
            if !recovered {
                let n = store::requeue_interrupted();
                if n > 0 {
                    log!("whatsapp_channel: {n} message(s) interrupted by a restart were queued again");
                }
            }
            Some(store::claim_due(BATCH, &version))
        });
        let Some(claimed) = claimed else {
            wait = IDLE; // not installed (yet): look again later
            continue;
        };
        recovered = true;
        if claimed.is_empty() {
            let due_in = BackgroundWorker::transaction(store::next_due_in);
            wait = due_in.map_or(IDLE, |s| Duration::from_secs_f64(s.clamp(0.005, IDLE.as_secs_f64())));
            continue;
        }
        let results = client.send_all(&base_url, &claimed);
        BackgroundWorker::transaction(AssertUnwindSafe(|| {
            for (message, result) in claimed.iter().zip(&results) {
                if let Err(e) = subtransaction::run(|| record(message, result)) {
                    warning!("whatsapp_channel: could not record the result of message {}: {e}", message.id);
                }
            }
        }));
        unsafe { pg_sys::pgstat_report_stat(false) };
        wait = Duration::ZERO; // there may be more
    }
}

fn timeout() -> Duration {
    Duration::from_millis(u64::try_from(guc::GRAPH_API_TIMEOUT_MS.get()).unwrap_or(30_000))
}

fn record(message: &Claimed, result: &SendResult) {
    let error = match result {
        SendResult::Answered(SendOutcome::Accepted { wamid }) => {
            return store::mark_sent(message.id, wamid);
        }
        SendResult::Answered(SendOutcome::Failed(error)) => error.clone(),
        SendResult::Transport(reason) => {
            GraphError { code: None, http_status: 0, message: reason.clone(), details: None }
        }
    };
    let code = error.code.and_then(|c| i32::try_from(c).ok());
    let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
    let retry = match result {
        SendResult::Transport(_) => Retry::Backoff,
        _ => graph_api::classify(&error),
    };
    match retry {
        Retry::Backoff | Retry::PairLimit if attempts < graph_api::MAX_ATTEMPTS => {
            let delay = graph_api::backoff(retry, attempts, jitter(message.id, attempts));
            log!(
                "whatsapp_channel: message {} not sent (attempt {attempts}): {}; retrying in {:.1}s",
                message.id,
                error.message,
                delay.as_secs_f64()
            );
            store::mark_retry(message.id, delay.as_secs_f64(), code, &error.message, error.details.as_deref());
        }
        _ => {
            let title = if matches!(retry, Retry::Backoff | Retry::PairLimit) {
                format!("gave up after {attempts} attempts: {}", error.message)
            } else {
                error.message.clone()
            };
            let hint = graph_api::hint(error.code).unwrap_or("");
            warning!("whatsapp_channel: message {} failed: {title} {hint}", message.id);
            store::mark_failed(message.id, code, &title, error.details.as_deref());
        }
    }
}

/// A spread in [0, 1) that differs per message and attempt, without a random number source.
fn jitter(id: i64, attempt: u32) -> f64 {
    let x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 11) as f64 / (1u64 << 53) as f64
}
