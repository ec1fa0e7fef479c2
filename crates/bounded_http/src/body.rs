//! Reading a request body within its limits: at most `max` bytes (413), and only while the
//! budget shared by all bodies in flight, and that of the client's own ones, have room (503).
//! The body grows as its bytes arrive, never by what the client announced, and each byte is
//! charged to both budgets as it arrives, so a client that announces a large body and sends
//! nothing costs nothing.

use crate::Reason;
use crate::sources::Source;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Why a body was not read: the reason (and with it the answer's status) and what the client is told.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub why: &'static str,
}

pub const TOO_LARGE: Refusal = Refusal { reason: Reason::TooLarge, why: "Payload too large" };
pub const BUDGET_SPENT: Refusal =
    Refusal { reason: Reason::Busy, why: "Busy: too many request bodies in flight, retry later" };
pub const SOURCE_BUDGET_SPENT: Refusal = Refusal {
    reason: Reason::SourceBytes,
    why: "Busy: too many request bodies in flight from this client address, retry later",
};
pub const LATE: Refusal = Refusal { reason: Reason::Timeout, why: "Request timeout: the body did not arrive in time" };
pub const BROKEN: Refusal = Refusal { reason: Reason::BadRequest, why: "Bad request: the body could not be read" };

/// Bytes charged to the budget of all bodies and to that of the connection's source; given
/// back to both when dropped (after the handler answered).
pub struct Charge {
    budget: Arc<Semaphore>,
    source: Arc<Source>,
    bytes: usize,
}

impl Charge {
    pub fn new(budget: Arc<Semaphore>, source: Arc<Source>) -> Charge {
        Charge { budget, source, bytes: 0 }
    }

    /// Takes `n` bytes from both budgets, or from neither. The source's first: a client over
    /// its own share is told so, and takes nothing from what the others share.
    fn take(&mut self, n: usize) -> Result<(), Refusal> {
        let n32 = u32::try_from(n).map_err(|_| TOO_LARGE)?;
        if !self.source.charge(n) {
            return Err(SOURCE_BUDGET_SPENT);
        }
        match self.budget.try_acquire_many(n32) {
            Ok(permit) => {
                permit.forget();
                self.bytes += n;
                Ok(())
            }
            Err(_) => {
                self.source.uncharge(n);
                Err(BUDGET_SPENT)
            }
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.add_permits(self.bytes);
        self.source.uncharge(self.bytes);
    }
}

/// The whole body (Content-Length or chunked), or why not. `charge` holds its bytes.
pub async fn read(body: &mut Incoming, max: usize, charge: &mut Charge) -> Result<Vec<u8>, Refusal> {
    use hyper::body::Body;
    let announced = body.size_hint().exact().and_then(|n| usize::try_from(n).ok());
    if announced.is_some_and(|n| n > max) {
        return Err(TOO_LARGE);
    }
    // Grows as bytes arrive, never by what was announced; what it holds (its capacity, not
    // only its length) is charged, so the budget bounds the memory.
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BROKEN)?;
        let Ok(data) = frame.into_data() else { continue }; // trailers: not kept
        let needed = bytes.len() + data.len();
        if needed > max {
            return Err(TOO_LARGE);
        }
        if needed > bytes.capacity() {
            let grown = needed.max(bytes.capacity() * 2).min(announced.unwrap_or(max).max(needed));
            charge.take(grown - bytes.capacity())?;
            bytes.reserve_exact(grown - bytes.len());
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

/// Reads and drops the rest of a refused body, for at most `time`, so that a client that
/// sends its whole body before reading sees the answer instead of a reset connection (a
/// lingering close). Neither kept nor charged: it costs bandwidth, not memory.
pub fn drain_later(mut body: Incoming, time: std::time::Duration) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(time, async { while let Some(Ok(_)) = body.frame().await {} }).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{SourceLimits, Sources};
    use std::sync::atomic::Ordering;

    #[test]
    fn a_charge_takes_from_both_budgets_or_neither_and_gives_back_when_dropped() {
        let limits = Arc::new(SourceLimits::default());
        limits.max_body_bytes.store(8, Ordering::Relaxed);
        let sources = Sources::new(limits);
        let (a, b) = (
            Arc::new(sources.open([192, 0, 2, 1].into()).unwrap()),
            Arc::new(sources.open([192, 0, 2, 2].into()).unwrap()),
        );
        let budget = Arc::new(Semaphore::new(10));
        // The source's budget (8) is the tighter one.
        let mut a1 = Charge::new(budget.clone(), a.clone());
        a1.take(6).unwrap();
        let mut a2 = Charge::new(budget.clone(), a.clone());
        assert_eq!(a2.take(3), Err(SOURCE_BUDGET_SPENT));
        assert_eq!(budget.available_permits(), 4, "a refused charge took nothing from the shared budget");
        // The shared one (4 left): another source's charge beyond it takes nothing from its own.
        let mut b1 = Charge::new(budget.clone(), b.clone());
        assert_eq!(b1.take(5), Err(BUDGET_SPENT));
        assert!(b.charge(8), "a refused charge took nothing from the source's budget");
        b.uncharge(8);
        b1.take(4).unwrap();
        assert_eq!(budget.available_permits(), 0);
        drop((a1, a2, b1));
        assert_eq!(budget.available_permits(), 10);
        assert!(a.charge(8) && b.charge(8), "both sources have their whole budget back");
        a.uncharge(8);
        b.uncharge(8);
    }
}
