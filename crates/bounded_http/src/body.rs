//! Reading a request body within its limits: at most `max` bytes (413), and only while the
//! budget shared by all bodies in flight has room (503). The body grows as its bytes arrive,
//! never by what the client announced, and each byte is charged to the budget as it arrives,
//! so a client that announces a large body and sends nothing costs nothing.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Why a body was not read: the answer's status and the reason given to the client.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: &'static str,
}

pub const TOO_LARGE: Refusal = Refusal { status: 413, why: "Payload too large" };
pub const BUDGET_SPENT: Refusal = Refusal { status: 503, why: "Busy: too many request bodies in flight, retry later" };
pub const LATE: Refusal = Refusal { status: 408, why: "Request timeout: the body did not arrive in time" };
pub const BROKEN: Refusal = Refusal { status: 400, why: "Bad request: the body could not be read" };

/// Bytes charged to the shared budget; given back when dropped (after the handler answered).
pub struct Charge {
    budget: Arc<Semaphore>,
    bytes: usize,
}

impl Charge {
    pub fn new(budget: Arc<Semaphore>) -> Charge {
        Charge { budget, bytes: 0 }
    }

    fn take(&mut self, n: usize) -> Result<(), Refusal> {
        let n32 = u32::try_from(n).map_err(|_| TOO_LARGE)?;
        match self.budget.try_acquire_many(n32) {
            Ok(permit) => {
                permit.forget();
                self.bytes += n;
                Ok(())
            }
            Err(_) => Err(BUDGET_SPENT),
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.add_permits(self.bytes);
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

    #[test]
    fn a_charge_gives_its_bytes_back_when_dropped() {
        let budget = Arc::new(Semaphore::new(10));
        let mut a = Charge::new(budget.clone());
        a.take(6).unwrap();
        let mut b = Charge::new(budget.clone());
        assert_eq!(b.take(5), Err(BUDGET_SPENT));
        b.take(4).unwrap();
        assert_eq!(budget.available_permits(), 0);
        drop(a);
        drop(b);
        assert_eq!(budget.available_permits(), 10);
    }
}
