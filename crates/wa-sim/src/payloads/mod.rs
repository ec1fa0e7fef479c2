//! Webhook POST bodies as Meta sends them. Shapes follow Meta's webhook reference examples
//! (`../shared/reference/whatsapp-cloud-api.md` §1): ids and timestamps are strings, numbers
//! are numbers, `contacts[]` is absent for `system` messages and `failed` statuses.
//!
//! This file holds the kinds `wa-sim trigger` sends and who sends them; the bodies are built by
//! a file per family: messages and other customer events, statuses, groups, history.

mod business;
mod envelope;
mod groups;
mod history;
mod messages;
mod statuses;
#[cfg(test)]
mod tests;

pub use business::{BUSINESS_KINDS, business_body, business_change};
pub use envelope::{batch, envelope, envelope_with_field, merge_values};
pub(crate) use groups::{group_invite_link, group_request_id};
pub use groups::{
    group_lifecycle_value, group_message_value, group_participants_value, group_settings_value, group_status_value,
    group_suspension_value,
};
pub use history::{HistoryMessage, history_declined_value, history_media_value, history_value, state_sync_value};
pub use messages::{
    call_value, echo, echo_value, message_value, preference_system_value, text_message, user_id_update_value,
    user_preferences_value,
};
pub use statuses::{failed_status_value, status, status_value};

/// Every inbound kind `wa-sim trigger` can send.
pub const MESSAGE_KINDS: &[&str] = &[
    "text",
    "image",
    "audio",
    "voice",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "button_reply",
    "list_reply",
    "button",
    "flow_reply",
    "address_reply",
    "call_permission_reply",
    "reaction",
    "order",
    "system",
    "unsupported",
];

/// Every status kind `wa-sim trigger` can send.
pub const STATUS_KINDS: &[&str] = &["sent", "delivered", "read", "played", "failed"];

/// Other webhooks `wa-sim trigger` sends: a message the business sent from the WhatsApp
/// Business app (`smb_message_echoes`), a customer's new BSUID (`user_id_update`), a
/// customer's call that rings and ends unanswered (`missed_call`, field `calls`), and a
/// customer stopping or resuming marketing messages (`user_preferences`, or the system message
/// `preference_changed`; `--value stop|resume`).
pub const OTHER_KINDS: &[&str] = &["echo", "user_id_update", "missed_call", "user_preferences", "preference_changed"];

/// Group webhooks `wa-sim trigger` sends (Meta's Groups API): a participant's text in a group,
/// the group created or deleted, a participant joining (by invite link) or leaving, and the
/// group suspended.
pub const GROUP_KINDS: &[&str] =
    &["group_text", "group_create", "group_delete", "group_join", "group_leave", "group_suspend"];

/// Coexistence onboarding webhooks `wa-sim trigger` sends: one chunk of chat history, the
/// business declining to share it, and one contact of the WhatsApp Business app synced.
pub const HISTORY_KINDS: &[&str] = &["history", "history_declined", "contacts_sync"];

/// The business number's display number: `metadata.display_phone_number`, and the `from` of
/// the business's own messages in history.
pub(crate) const BUSINESS_NUMBER: &str = "15550783881";

/// The customer a message comes from.
#[derive(Debug, Clone)]
pub struct Customer {
    /// WhatsApp id: digits, no '+'.
    pub wa_id: String,
    pub name: String,
}
