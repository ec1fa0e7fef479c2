//! A customer's marketing preference: the `user_preferences` field (`value.user_preferences[]`:
//! they tapped "Stop promotions" or resumed them) and the system message
//! `user_preference_changed` that may say the same in the chat.

use super::{Message, str_at, unix_at};
use serde_json::Value;

/// What the customer said about marketing messages from this business: Meta's `value`,
/// `stop` or `resume`, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketingPreference {
    /// They stopped marketing messages: Meta refuses marketing templates to them (131050).
    Stop,
    /// They resumed them (only the customer can: the business has no API for it).
    Resume,
}

impl MarketingPreference {
    /// Meta's word for it; any other word is not a marketing preference.
    pub fn from_meta(word: &str) -> Option<MarketingPreference> {
        match word {
            "stop" => Some(MarketingPreference::Stop),
            "resume" => Some(MarketingPreference::Resume),
            _ => None,
        }
    }

    /// Meta's word for it, which is also what the extension's SQL takes.
    pub fn as_meta(self) -> &'static str {
        match self {
            MarketingPreference::Stop => "stop",
            MarketingPreference::Resume => "resume",
        }
    }
}

/// A change of a customer's marketing preference, from either source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPreference {
    pub wa_id: Option<String>,
    /// The customer's BSUID, when Meta names them by it (username users have no `wa_id`).
    pub user_id: Option<String>,
    pub preference: MarketingPreference,
    /// Meta's `detail` ("User requested to stop marketing messages").
    pub detail: Option<String>,
    /// When the customer changed it (unix seconds; Meta sends a number here, a string in
    /// messages). Events are applied only if newer than the one applied before.
    pub timestamp: Option<i64>,
}

/// A `value.user_preferences[]` item; `None` (kept as rejected by the caller) without an id
/// of the customer, or when it is not about marketing messages, or its value is neither
/// `stop` nor `resume`.
pub(super) fn parse_user_preference(item: &Value) -> Option<UserPreference> {
    if str_at(item, &["category"]).as_deref() != Some("marketing_messages") {
        return None;
    }
    let wa_id = str_at(item, &["wa_id"]);
    let user_id = str_at(item, &["user_id"]);
    if wa_id.is_none() && user_id.is_none() {
        return None;
    }
    Some(UserPreference {
        wa_id,
        user_id,
        preference: MarketingPreference::from_meta(&str_at(item, &["value"])?)?,
        detail: str_at(item, &["detail"]),
        timestamp: unix_at(item, &["timestamp"]),
    })
}

/// The preference a `user_preference_changed` system message announces. Meta's system
/// messages reference documents only number and BSUID changes; this reads the word from
/// `system.marketing` (as peers that receive it do) or `system.value`, and `None` means the
/// message is stored as a system notice and changes nothing.
pub(super) fn preference_of_system_message(m: &Message) -> Option<UserPreference> {
    if m.kind != "system" || str_at(&m.raw, &["system", "type"]).as_deref() != Some("user_preference_changed") {
        return None;
    }
    let word = str_at(&m.raw, &["system", "marketing"]).or_else(|| str_at(&m.raw, &["system", "value"]))?;
    if m.from.is_none() && m.from_user_id.is_none() {
        return None;
    }
    Some(UserPreference {
        wa_id: m.from.clone(),
        user_id: m.from_user_id.clone(),
        preference: MarketingPreference::from_meta(&word)?,
        detail: str_at(&m.raw, &["system", "body"]),
        timestamp: m.timestamp,
    })
}
