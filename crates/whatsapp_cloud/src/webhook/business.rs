//! What Meta says about the business rather than a conversation: the account (`account_update`,
//! `account_alerts`, `account_review_update`), a number (`phone_number_quality_update`,
//! `phone_number_name_update`), the portfolio's limits (`business_capability_update`), its
//! templates (`message_template_status_update`, `message_template_quality_update`,
//! `template_category_update`, `message_template_components_update`), webhook-level `errors`,
//! and any field this parser does not understand. Each becomes one [`BusinessEvent`]: what Meta
//! said, in its words, and what it means for the channel ([`ChannelFacts`]) or a template
//! ([`TemplateState`]). What the extension does about it is decided in SQL, which knows the
//! channel (`_wa_receive_channel_event`, sql/inbound_business.sql).

use super::{int_at, str_at};
use serde_json::{Map, Value, json};

/// The kinds of business event: the Postgres enum `wa_channel_event_kind` holds the same labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusinessKind {
    AccountUpdate,
    AccountAlert,
    AccountReview,
    PhoneNumberQuality,
    PhoneNumberName,
    BusinessCapability,
    TemplateStatus,
    TemplateQuality,
    TemplateCategory,
    TemplateComponents,
    WebhookError,
    UnknownField,
}

impl BusinessKind {
    /// Its label in `wa_channel_event_kind`.
    pub fn as_sql(self) -> &'static str {
        match self {
            BusinessKind::AccountUpdate => "account_update",
            BusinessKind::AccountAlert => "account_alert",
            BusinessKind::AccountReview => "account_review",
            BusinessKind::PhoneNumberQuality => "phone_number_quality",
            BusinessKind::PhoneNumberName => "phone_number_name",
            BusinessKind::BusinessCapability => "business_capability",
            BusinessKind::TemplateStatus => "template_status",
            BusinessKind::TemplateQuality => "template_quality",
            BusinessKind::TemplateCategory => "template_category",
            BusinessKind::TemplateComponents => "template_components",
            BusinessKind::WebhookError => "webhook_error",
            BusinessKind::UnknownField => "unknown_field",
        }
    }

    /// The kind of a webhook field about the business; `None` for the fields of conversations.
    fn of_field(field: &str) -> Option<BusinessKind> {
        Some(match field {
            "account_update" => BusinessKind::AccountUpdate,
            "account_alerts" => BusinessKind::AccountAlert,
            "account_review_update" => BusinessKind::AccountReview,
            "phone_number_quality_update" => BusinessKind::PhoneNumberQuality,
            "phone_number_name_update" => BusinessKind::PhoneNumberName,
            "business_capability_update" => BusinessKind::BusinessCapability,
            "message_template_status_update" => BusinessKind::TemplateStatus,
            "message_template_quality_update" => BusinessKind::TemplateQuality,
            "template_category_update" => BusinessKind::TemplateCategory,
            "message_template_components_update" => BusinessKind::TemplateComponents,
            _ => return None,
        })
    }
}

/// The fields whose items the other files of this parser read (messages, statuses, echoes,
/// calls, groups, history, contacts). Any field neither here nor a [`BusinessKind`] is not
/// understood: it becomes an [`BusinessKind::UnknownField`] event, counted per field.
pub const CONVERSATION_FIELDS: &[&str] = &[
    "messages",
    "smb_message_echoes",
    "smb_app_state_sync",
    "history",
    "user_id_update",
    "calls",
    "group_lifecycle_update",
    "group_participants_update",
    "group_settings_update",
    "group_status_update",
    "user_preferences",
];

/// The standard throughput of a business number, messages per second (Meta's throughput page):
/// what a number falls back to when it loses the higher throughput.
pub const STANDARD_THROUGHPUT: i32 = 80;
/// The higher throughput Meta upgrades a number to.
pub const HIGH_THROUGHPUT: i32 = 1000;

/// One thing Meta said about the business.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessEvent {
    pub kind: BusinessKind,
    /// `changes[].field`, as Meta named it.
    pub field: String,
    /// `entry[].time` (Unix seconds) when Meta sends it: orders events of one kind, so that an
    /// older one delivered late never overrides a newer one. (Set by [`super::parse`].)
    pub at: Option<i64>,
    /// Meta's words, on one line: the event, its type and its text.
    pub summary: String,
    pub facts: ChannelFacts,
    pub template: Option<TemplateState>,
    /// `value.display_phone_number` of a number-level event (quality, name): which number of
    /// the account it is about.
    pub display_phone_number: Option<String>,
    /// The `changes[].value` (or the one error) as Meta sent it.
    pub raw: Value,
}

/// What an event says about a channel; only what Meta stated is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelFacts {
    /// The number's quality as Meta's quality events name it: `FLAGGED` (rated low; the
    /// messaging limit may be lowered) or `UNFLAGGED` (recovered).
    pub quality_rating: Option<String>,
    /// The messaging limit as Meta states it: a tier (`TIER_1K`) or a number of business-initiated
    /// conversations a day (`-1`: unlimited).
    pub messaging_limit: Option<String>,
    /// Messages per second Meta allows the number, when it says so.
    pub throughput: Option<i32>,
    /// The account's state: the `account_update` event (`ACCOUNT_RESTRICTION`, `ACCOUNT_OFFBOARDED`,
    /// ...) or its ban state (`DISABLE`, `REINSTATE`).
    pub account_status: Option<String>,
    /// A ban, restriction, violation, offboarding or review decision, in Meta's words.
    pub account_event: Option<String>,
    /// The display name's review: `APPROVED`, `REJECTED`, ...
    pub display_name_status: Option<String>,
    /// The send rate this event allows at most (lower only: the channel's rate is lowered to it
    /// and raised by an operator): its throughput, or the standard throughput when the quality
    /// drops (Meta keeps the higher throughput only for numbers of medium quality or better).
    pub send_rate_cap: Option<i32>,
    /// Meta stopped the account sending: a messaging restriction, a ban, an offboarding. The
    /// channel's queue is paused with the summary as the reason.
    pub stops_sending: bool,
}

impl ChannelFacts {
    /// The facts as a JSON object of the keys set (`wa_channel_events.facts`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("quality_rating", self.quality_rating.clone().map(Value::from));
        put("messaging_limit", self.messaging_limit.clone().map(Value::from));
        put("throughput", self.throughput.map(Value::from));
        put("account_status", self.account_status.clone().map(Value::from));
        put("account_event", self.account_event.clone().map(Value::from));
        put("display_name_status", self.display_name_status.clone().map(Value::from));
        put("send_rate_cap", self.send_rate_cap.map(Value::from));
        put("stops_sending", self.stops_sending.then_some(Value::Bool(true)));
        Value::Object(m)
    }
}

/// What a template event says about one template; only what Meta stated is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateState {
    pub name: String,
    pub language: String,
    pub template_id: Option<String>,
    /// `APPROVED`, `REJECTED`, `PAUSED`, `DISABLED`, `PENDING_DELETION`, ...
    pub status: Option<String>,
    /// Meta's reason (a rejection reason, or the text of a pause or disable).
    pub reason: Option<String>,
    /// `GREEN`, `YELLOW`, `RED`, `UNKNOWN`.
    pub quality_score: Option<String>,
    /// The category after the change (`MARKETING`, `UTILITY`, `AUTHENTICATION`).
    pub category: Option<String>,
    pub previous_category: Option<String>,
    /// When a recategorisation takes effect (Unix seconds), if Meta announces it ahead.
    pub category_changes_at: Option<i64>,
    /// Meta changed its components: the stored copy is stale until `wa_sync_templates`.
    pub components_changed: bool,
}

impl TemplateState {
    /// The state as a JSON object (`_wa_receive_channel_event`'s template argument).
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name, "language": self.language, "template_id": self.template_id,
            "status": self.status, "reason": self.reason, "quality_score": self.quality_score,
            "category": self.category, "previous_category": self.previous_category,
            "category_changes_at": self.category_changes_at, "components_changed": self.components_changed,
        })
    }
}

/// The business events of one change: one for a business field, one for a field not
/// understood, and one per webhook-level error (`value.errors[]`) of any field.
pub(super) fn parse_business(field: &str, value: &Value) -> Vec<BusinessEvent> {
    let mut events = Vec::new();
    if let Some(kind) = BusinessKind::of_field(field) {
        events.push(read(kind, field, value));
    } else if !CONVERSATION_FIELDS.contains(&field) {
        events.push(event(
            BusinessKind::UnknownField,
            field,
            format!("webhook field {field:?} is not understood by this version: kept raw"),
            value,
        ));
    }
    for error in value.get("errors").and_then(Value::as_array).into_iter().flatten() {
        let summary = error_text(error);
        events.push(event(BusinessKind::WebhookError, field, summary, error));
    }
    events
}

fn event(kind: BusinessKind, field: &str, summary: String, raw: &Value) -> BusinessEvent {
    BusinessEvent {
        kind,
        field: field.to_string(),
        at: None,
        summary,
        facts: ChannelFacts::default(),
        template: None,
        display_phone_number: str_at(raw, &["display_phone_number"]),
        raw: raw.clone(),
    }
}

/// `code title: message (details)` of one of Meta's error objects.
fn error_text(error: &Value) -> String {
    let code = str_at(error, &["code"]).unwrap_or_else(|| "?".into());
    let title = str_at(error, &["title"]).unwrap_or_default();
    let mut text = format!("error {code} {title}");
    if let Some(m) = str_at(error, &["message"]).filter(|m| *m != title) {
        text.push_str(&format!(": {m}"));
    }
    if let Some(d) = str_at(error, &["error_data", "details"]) {
        text.push_str(&format!(" ({d})"));
    }
    text.trim().to_string()
}

/// Words joined with spaces, the missing ones left out.
fn words(parts: &[Option<String>]) -> String {
    parts.iter().flatten().map(String::as_str).collect::<Vec<_>>().join(" ")
}

fn read(kind: BusinessKind, field: &str, v: &Value) -> BusinessEvent {
    let s = |path: &[&str]| str_at(v, path);
    let mut e = event(kind, field, String::new(), v);
    match kind {
        BusinessKind::AccountUpdate => read_account_update(&mut e, v),
        BusinessKind::AccountAlert => {
            e.summary = words(&[
                s(&["alert_severity"]),
                s(&["alert_type"]),
                s(&["alert_status"]).map(|x| format!("({x})")),
                s(&["alert_description"]).map(|d| format!("- {d}")),
            ]);
        }
        BusinessKind::AccountReview => {
            let decision = s(&["decision"]);
            e.summary = format!("account review: {}", decision.clone().unwrap_or_else(|| "?".into()));
            e.facts.account_event = Some(e.summary.clone());
        }
        BusinessKind::PhoneNumberQuality => read_quality(&mut e, v),
        BusinessKind::PhoneNumberName => {
            let decision = s(&["decision"]);
            e.summary = words(&[
                Some("display name".into()),
                s(&["requested_verified_name"]).map(|n| format!("{n:?}")),
                decision.clone(),
                s(&["rejection_reason"]).filter(|r| r != "NONE").map(|r| format!("({r})")),
            ]);
            e.facts.display_name_status = decision;
        }
        BusinessKind::BusinessCapability => {
            let limit =
                s(&["max_daily_conversations_per_business"]).or_else(|| s(&["max_daily_conversation_per_phone"]));
            e.summary = words(&[
                Some("messaging limit".into()),
                limit.clone(),
                s(&["max_phone_numbers_per_business"]).map(|n| format!("; numbers per business {n}")),
            ]);
            e.facts.messaging_limit = limit;
        }
        _ => read_template(&mut e, v),
    }
    e
}

/// `account_update`: a violation, restriction, ban, offboarding, reconnection, or something
/// that does not change what the channel may do (verification, partner, pricing...).
fn read_account_update(e: &mut BusinessEvent, v: &Value) {
    let event = str_at(v, &["event"]).unwrap_or_else(|| "?".into());
    let violation = str_at(v, &["violation_info", "violation_type"]);
    let restrictions: Vec<(String, Option<String>)> = v
        .get("restriction_info")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| Some((str_at(r, &["restriction_type"])?, str_at(r, &["expiration"]))))
        .collect();
    // waba_ban_state is an array in Meta's example, a string in some partners' copies.
    let ban_state = match v.pointer("/ban_info/waba_ban_state") {
        Some(Value::Array(states)) => states.iter().rev().find_map(Value::as_str).map(str::to_string),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let ban_date = str_at(v, &["ban_info", "waba_ban_date"]);
    let mut summary = event.clone();
    if let Some(t) = &violation {
        summary.push_str(&format!(": violation {t}"));
    }
    for (kind, until) in &restrictions {
        summary.push_str(&format!(": {kind}"));
        if let Some(u) = until {
            summary.push_str(&format!(" until {u}"));
        }
    }
    if let Some(state) = &ban_state {
        summary.push_str(&format!(": ban state {state}"));
        if let Some(d) = &ban_date {
            summary.push_str(&format!(" on {d}"));
        }
    }
    let is_account_event = violation.is_some()
        || !restrictions.is_empty()
        || ban_state.is_some()
        || matches!(
            event.as_str(),
            "ACCOUNT_OFFBOARDED" | "ACCOUNT_RECONNECTED" | "ACCOUNT_DELETED" | "DISABLED_UPDATE"
        );
    if is_account_event {
        e.facts.account_status = Some(ban_state.clone().unwrap_or_else(|| event.clone()));
        e.facts.account_event = Some(summary.clone());
    }
    // What stops sending: a restriction on messaging (not, say, on adding numbers), a ban that
    // took effect, an offboarding or a deletion.
    e.facts.stops_sending = restrictions.iter().any(|(kind, _)| kind.contains("MESSAGING"))
        || ban_state.as_deref() == Some("DISABLE")
        || matches!(event.as_str(), "ACCOUNT_OFFBOARDED" | "ACCOUNT_DELETED");
    e.summary = summary;
}

/// `phone_number_quality_update`: the quality flag, the messaging limit, the throughput.
fn read_quality(e: &mut BusinessEvent, v: &Value) {
    let event = str_at(v, &["event"]).unwrap_or_else(|| "?".into());
    let current = str_at(v, &["current_limit"]);
    let per_business = str_at(v, &["max_daily_conversations_per_business"]);
    e.summary = words(&[
        Some(event.clone()),
        str_at(v, &["old_limit"]).map(|o| format!("from {o}")),
        current.clone().or_else(|| per_business.clone()).map(|c| format!("to {c}")),
    ]);
    match event.as_str() {
        "FLAGGED" | "UNFLAGGED" => e.facts.quality_rating = Some(event.clone()),
        _ => {}
    }
    // The throughput is stated by its own events, or by the number's throughput level.
    let throughput = match (event.as_str(), str_at(v, &["throughput", "level"]).as_deref()) {
        ("THROUGHPUT_UPGRADE", _) | (_, Some("HIGH")) => Some(HIGH_THROUGHPUT),
        ("THROUGHPUT_DOWNGRADE", _) | (_, Some("STANDARD")) => Some(STANDARD_THROUGHPUT),
        _ => int_at(v, &["max_messages_per_second"]).and_then(|n| i32::try_from(n).ok()),
    };
    e.facts.throughput = throughput;
    e.facts.send_rate_cap = match event.as_str() {
        "FLAGGED" => Some(throughput.unwrap_or(STANDARD_THROUGHPUT).min(STANDARD_THROUGHPUT)),
        _ => throughput,
    };
    // A messaging limit event states the limit; a throughput event's current_limit is the
    // throughput level, not a limit.
    if !event.starts_with("THROUGHPUT") {
        e.facts.messaging_limit = per_business.or(current);
    }
}

/// The four template fields.
fn read_template(e: &mut BusinessEvent, v: &Value) {
    let s = |path: &[&str]| str_at(v, path);
    let mut t = TemplateState {
        name: s(&["message_template_name"]).unwrap_or_default(),
        language: s(&["message_template_language"]).unwrap_or_default(),
        template_id: s(&["message_template_id"]),
        ..TemplateState::default()
    };
    let what = match e.kind {
        BusinessKind::TemplateStatus => {
            t.status = s(&["event"]);
            t.reason = s(&["reason"])
                .filter(|r| r != "NONE")
                .or_else(|| s(&["other_info", "description"]))
                .or_else(|| s(&["disable_info", "disable_date"]).map(|d| format!("disabled on {d}")));
            words(&[t.status.clone(), t.reason.clone().map(|r| format!("({r})"))])
        }
        BusinessKind::TemplateQuality => {
            t.quality_score = s(&["new_quality_score"]);
            words(&[
                Some("quality".into()),
                s(&["previous_quality_score"]).map(|p| format!("{p} ->")),
                t.quality_score.clone(),
            ])
        }
        BusinessKind::TemplateCategory => {
            // Meta announces a recategorisation ahead (correct_category, with when it takes
            // effect), then reports it done (new_category).
            t.previous_category = s(&["previous_category"]);
            t.category = s(&["new_category"]).or_else(|| s(&["correct_category"]));
            t.category_changes_at = int_at(v, &["category_update_timestamp"]);
            words(&[
                Some("category".into()),
                t.previous_category.clone().map(|p| format!("{p} ->")),
                t.category.clone(),
            ])
        }
        _ => {
            t.components_changed = true;
            "components changed: run wa_sync_templates() to read them".to_string()
        }
    };
    e.summary = format!("template {:?} ({}) {what}", t.name, t.language);
    e.template = Some(t);
}
