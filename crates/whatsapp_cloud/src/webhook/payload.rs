//! What a webhook POST becomes: a [`Payload`] of [`Change`]s, each with the items it carried,
//! and the items that could not be used.

use super::UserPreference;
use super::{BusinessEvent, UserIdUpdate};
use super::{Call, Contact, ContactSync, Echo, GroupEvent, HistoryChunk, HistoryMessage, Message, Status};
use serde_json::Value;

/// A webhook POST body, flattened: one [`Change`] per `entry[].changes[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub changes: Vec<Change>,
}

/// One `entry[].changes[]` item.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `changes[].field`: `messages` for messages, statuses and errors; other fields exist.
    pub field: String,
    /// `value.metadata.phone_number_id`: the routing key to a channel (not `entry[].id`).
    pub phone_number_id: Option<String>,
    /// `value.metadata.display_phone_number`: the business's own number (digits), which tells
    /// the business's messages from the customer's in a history thread.
    pub display_phone_number: Option<String>,
    pub contacts: Vec<Contact>,
    pub messages: Vec<Message>,
    pub statuses: Vec<Status>,
    /// `smb_message_echoes`: messages the business sent from the WhatsApp Business app on a
    /// coexistence number (`value.message_echoes[]`).
    pub echoes: Vec<Echo>,
    /// `value.user_id_update[]`: customers whose business-scoped id (BSUID) changed.
    pub user_id_updates: Vec<UserIdUpdate>,
    /// `value.calls[]` (field `calls`, the Calling API): a call began or ended.
    pub calls: Vec<Call>,
    /// `value.groups[]` (fields `group_lifecycle_update`, `group_participants_update`,
    /// `group_settings_update`, `group_status_update`, the Groups API).
    pub groups: Vec<GroupEvent>,
    /// Messages of the chat history a coexistence number shares when it is onboarded (field
    /// `history`: `value.history[].threads[].messages[]`, and the media of those messages,
    /// which Meta sends later as `value.messages[]` under the same field).
    pub history: Vec<HistoryMessage>,
    /// `value.history[].metadata` of each chunk (phase, chunk order, progress), and a refusal to
    /// share history (`value.history[].errors[]`).
    pub history_chunks: Vec<HistoryChunk>,
    /// `value.state_sync[]` (field `smb_app_state_sync`): contacts of the WhatsApp Business app
    /// added or removed.
    pub contact_syncs: Vec<ContactSync>,
    /// Customers who stopped or resumed marketing messages: `value.user_preferences[]` (field
    /// `user_preferences`), and `user_preference_changed` system messages among `messages`.
    pub user_preferences: Vec<UserPreference>,
    /// Items that could not be used (no wamid), kept raw with the reason.
    pub rejected: Vec<Rejected>,
    /// `entry[].id`: the WhatsApp Business Account the change is about.
    pub business_account_id: Option<String>,
    /// What Meta said about the business (account, number, limits, templates), webhook-level
    /// `value.errors[]`, or a field not understood: see [`super::business`].
    pub business: Vec<BusinessEvent>,
}

/// An item that cannot be stored as a message or status, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub reason: &'static str,
    pub raw: Value,
}

/// Why a body is not a webhook payload at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl Payload {
    pub fn message_count(&self) -> usize {
        self.changes.iter().map(|c| c.messages.len()).sum()
    }

    pub fn status_count(&self) -> usize {
        self.changes.iter().map(|c| c.statuses.len()).sum()
    }
}

impl Change {
    /// The contact entry that describes the sender of `message`, if Meta sent one.
    pub fn sender_of(&self, message: &Message) -> Option<&Contact> {
        let by_wa_id = message.from.as_ref().and_then(|f| self.contacts.iter().find(|c| c.wa_id.as_ref() == Some(f)));
        let by_user_id = || {
            let id = message.from_user_id.as_ref()?;
            self.contacts.iter().find(|c| c.user_id.as_ref() == Some(id))
        };
        by_wa_id.or_else(by_user_id).or(if self.contacts.len() == 1 { self.contacts.first() } else { None })
    }
}
