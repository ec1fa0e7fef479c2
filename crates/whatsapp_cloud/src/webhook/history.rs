//! The chat history a coexistence number shares when it is onboarded (field `history`): its
//! messages, the media that follows them, and how far the sync has got.

use super::messages::parse_message;
use super::parse::collect;
use super::{Message, Rejected, int_at, str_at};
use serde_json::Value;

/// A message of a shared chat history: sent or received on the WhatsApp Business app before
/// the number was onboarded to the Cloud API.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryMessage {
    pub message: Message,
    /// The customer of the thread (`threads[].id`); for a media follow-up, the sender unless
    /// that is the business.
    pub customer: Option<String>,
    /// Sent by the business (its number is `from`), not by the customer.
    pub from_business: bool,
    /// `history_context.status` in lower case (`read`, `delivered`, `sent`, `played`,
    /// `error`, `pending`).
    pub status: Option<String>,
}

/// What one `value.history[]` item says about the sync itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryChunk {
    /// 0: day 0 to 1, 1: day 1 to 90, 2: day 90 to 180 before onboarding.
    pub phase: Option<i64>,
    pub chunk_order: Option<i64>,
    /// 0 to 100; 100 means the sync is complete.
    pub progress: Option<i64>,
    pub messages: usize,
    /// `errors[0].code`: 2593109 when the business declined to share its history.
    pub error_code: Option<i64>,
    pub error: Option<String>,
}

/// The messages of every `value.history[]` chunk, and what each chunk says about the sync;
/// messages without a wamid go to `rejected`.
pub(super) fn parse_history(
    chunks: &[Value],
    rejected: &mut Vec<Rejected>,
) -> (Vec<HistoryMessage>, Vec<HistoryChunk>) {
    let (mut history, mut history_chunks) = (Vec::new(), Vec::new());
    for h in chunks {
        let before = history.len();
        for thread in h.get("threads").and_then(Value::as_array).into_iter().flatten() {
            history.extend(parse_thread(thread, rejected));
        }
        history_chunks.push(parse_chunk(h, history.len() - before));
    }
    (history, history_chunks)
}

/// The messages of one `threads[]` item: one customer's conversation with the business.
fn parse_thread(thread: &Value, rejected: &mut Vec<Rejected>) -> Vec<HistoryMessage> {
    let customer = str_at(thread, &["id"]);
    let messages = thread.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    collect(messages, "history message without an id (wamid)", rejected, |m| {
        let message = parse_message(m)?;
        let from_business = message.from.is_some() && message.from != customer;
        Some(HistoryMessage {
            message,
            customer: customer.clone(),
            from_business,
            status: str_at(m, &["history_context", "status"]).map(|s| s.to_ascii_lowercase()),
        })
    })
}

/// What a `value.history[]` item says about the sync, `messages` being how many it carried.
fn parse_chunk(h: &Value, messages: usize) -> HistoryChunk {
    let error = h.get("errors").and_then(Value::as_array).and_then(|e| e.first());
    HistoryChunk {
        phase: int_at(h, &["metadata", "phase"]),
        chunk_order: int_at(h, &["metadata", "chunk_order"]),
        progress: int_at(h, &["metadata", "progress"]),
        messages,
        error_code: error.and_then(|e| e.get("code")).and_then(Value::as_i64),
        error: error.and_then(|e| str_at(e, &["title"]).or_else(|| str_at(e, &["message"]))),
    }
}

/// A media message of a shared history, sent under field `history` after the chunk that
/// announced it: the business sent it when it is from `display_phone_number`.
pub(super) fn history_media(message: Message, display_phone_number: Option<&str>) -> HistoryMessage {
    let from_business = message.from.is_some() && message.from.as_deref() == display_phone_number;
    let customer = if from_business { None } else { message.from.clone() };
    HistoryMessage { message, customer, from_business, status: None }
}
