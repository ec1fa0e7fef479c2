//! Who the customers are: the senders of a change (`value.contacts[]`), a customer whose
//! business-scoped id changed (`value.user_id_update[]`), and the contacts of the WhatsApp
//! Business app (`value.state_sync[]`).

use super::{str_at, unix_at};
use serde_json::Value;

/// A sender from `value.contacts[]`. Since 2026 either id may be missing (BSUID rollout).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub username: Option<String>,
}

/// A customer's BSUID (and parent BSUID) changed: `user_id_update[]` with `wa_id`,
/// `user_id.previous/current`, `parent_user_id.previous/current`, `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdUpdate {
    pub wa_id: Option<String>,
    pub previous: Option<String>,
    pub current: String,
    pub parent_previous: Option<String>,
    pub parent_current: Option<String>,
}

/// A contact the business saved in (or removed from) the WhatsApp Business app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSync {
    /// `contact.phone_number`, digits only.
    pub wa_id: String,
    /// `contact.full_name` (else `first_name`).
    pub full_name: Option<String>,
    /// `action`: `add` or `remove`.
    pub action: String,
    pub timestamp: Option<i64>,
}

/// A `value.contacts[]` item: every id is optional.
pub(super) fn parse_contact(c: &Value) -> Contact {
    Contact {
        wa_id: str_at(c, &["wa_id"]),
        user_id: str_at(c, &["user_id"]),
        profile_name: str_at(c, &["profile", "name"]),
        username: str_at(c, &["profile", "username"]),
    }
}

/// A `value.user_id_update[]` item; `None` without the new id.
pub(super) fn parse_user_id_update(u: &Value) -> Option<UserIdUpdate> {
    Some(UserIdUpdate {
        wa_id: str_at(u, &["wa_id"]),
        previous: str_at(u, &["user_id", "previous"]),
        current: str_at(u, &["user_id", "current"])?,
        parent_previous: str_at(u, &["parent_user_id", "previous"]),
        parent_current: str_at(u, &["parent_user_id", "current"]),
    })
}

/// A `value.state_sync[]` item about a contact; `None` without a phone number or an action, or
/// when it is about something else than a contact.
pub(super) fn parse_contact_sync(c: &Value) -> Option<ContactSync> {
    if str_at(c, &["type"]).is_some_and(|t| t != "contact") {
        return None;
    }
    let wa_id: String = str_at(c, &["contact", "phone_number"])?.chars().filter(char::is_ascii_digit).collect();
    if wa_id.is_empty() {
        return None;
    }
    Some(ContactSync {
        wa_id,
        full_name: str_at(c, &["contact", "full_name"]).or_else(|| str_at(c, &["contact", "first_name"])),
        action: str_at(c, &["action"])?,
        timestamp: unix_at(c, &["metadata", "timestamp"]),
    })
}
