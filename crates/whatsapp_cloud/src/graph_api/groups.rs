//! The Groups API's management calls, performed as actions of the outbox: create a group, get
//! and reset its invite link, approve and reject its join requests, remove participants (Meta's
//! "Group management" reference). Listing join requests and getting the link take no body. The
//! group webhooks are read in `webhook/groups.rs`.

use super::InvalidMessage;
use serde_json::{Value, json};

/// Longest group subject Meta takes, in characters, after trimming.
pub const MAX_GROUP_SUBJECT_CHARS: usize = 128;
/// Longest group description Meta takes, in characters.
pub const MAX_GROUP_DESCRIPTION_CHARS: usize = 2048;
/// Most participants one removal may name: a group has at most 8.
pub const MAX_GROUP_PARTICIPANTS: usize = 8;

/// Who may join a group by its invite link (Meta's `join_approval_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinApproval {
    /// `auto_approve`: whoever opens the link joins (Meta's default).
    Automatic,
    /// `approval_required`: opening the link makes a join request, to approve or reject.
    Required,
}

impl JoinApproval {
    fn label(self) -> &'static str {
        match self {
            JoinApproval::Automatic => "auto_approve",
            JoinApproval::Required => "approval_required",
        }
    }
}

fn invalid(problem: impl Into<String>, hint: &'static str) -> InvalidMessage {
    InvalidMessage { problem: problem.into(), hint }
}

/// The body of a group's creation. Meta trims the subject, as this does; an empty description
/// is left out.
pub fn create_group(subject: &str, description: Option<&str>, join: JoinApproval) -> Result<Value, InvalidMessage> {
    let subject = subject.trim();
    if subject.is_empty() {
        return Err(invalid("the group subject is empty", "Pass the group's name, e.g. 'Order 4521: delivery'."));
    }
    let chars = subject.chars().count();
    if chars > MAX_GROUP_SUBJECT_CHARS {
        return Err(invalid(
            format!("the group subject has {chars} characters; Meta takes at most {MAX_GROUP_SUBJECT_CHARS}"),
            "Shorten the subject; the description can say more (up to 2,048 characters).",
        ));
    }
    let mut body = json!({ "messaging_product": "whatsapp", "subject": subject, "join_approval_mode": join.label() });
    if let Some(description) = description.filter(|d| !d.trim().is_empty()) {
        let chars = description.chars().count();
        if chars > MAX_GROUP_DESCRIPTION_CHARS {
            return Err(invalid(
                format!(
                    "the group description has {chars} characters; Meta takes at most {MAX_GROUP_DESCRIPTION_CHARS}"
                ),
                "Shorten the description.",
            ));
        }
        body["description"] = json!(description);
    }
    Ok(body)
}

/// The body of an invite link's reset: Meta makes a new link and the old one stops working.
pub fn reset_invite_link() -> Value {
    json!({ "messaging_product": "whatsapp" })
}

/// The first item listed twice, if any.
fn listed_twice(items: &[String]) -> Option<&str> {
    items.iter().enumerate().find(|(i, x)| items[..*i].contains(x)).map(|(_, x)| x.as_str())
}

/// The body of an approval (`POST`) or a rejection (`DELETE`) of join requests, by the ids Meta
/// listed.
pub fn join_requests(ids: &[String]) -> Result<Value, InvalidMessage> {
    const HINT: &str = "Pass ids Meta listed: SELECT join_request_id FROM wa_group_join_requests WHERE group_id = '…' (filled by wa_list_group_join_requests).";
    if ids.is_empty() {
        return Err(invalid("no join request ids", HINT));
    }
    if ids.iter().any(|id| id.trim().is_empty()) {
        return Err(invalid("a join request id is empty", HINT));
    }
    if let Some(id) = listed_twice(ids) {
        return Err(invalid(format!("join request {id} is listed twice"), HINT));
    }
    Ok(json!({ "messaging_product": "whatsapp", "join_requests": ids }))
}

/// The body of a removal of participants: phone numbers (`+E.164`, as normalised) go as
/// `user`, business-scoped user ids (BSUIDs) as `user_id`.
pub fn remove_participants(users: &[String]) -> Result<Value, InvalidMessage> {
    const HINT: &str =
        "Pass the participants' numbers, e.g. ARRAY['+15551234567'], at most 8 (see wa_groups.participants).";
    if users.is_empty() {
        return Err(invalid("no participants to remove", HINT));
    }
    if users.len() > MAX_GROUP_PARTICIPANTS {
        return Err(invalid(
            format!("{} participants in one request; a group has at most {MAX_GROUP_PARTICIPANTS}", users.len()),
            HINT,
        ));
    }
    if let Some(user) = listed_twice(users) {
        return Err(invalid(format!("{user} is listed twice"), HINT));
    }
    let list: Vec<Value> =
        users.iter().map(|u| if u.starts_with('+') { json!({ "user": u }) } else { json!({ "user_id": u }) }).collect();
    Ok(json!({ "messaging_product": "whatsapp", "participants": list }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_groups_creation_as_meta_takes_it() {
        let body = create_group("  Launch team ", Some("For the launch"), JoinApproval::Required).unwrap();
        assert_eq!(
            body,
            json!({ "messaging_product": "whatsapp", "subject": "Launch team", "description": "For the launch",
                    "join_approval_mode": "approval_required" })
        );
        let body = create_group("Team", Some(" "), JoinApproval::Automatic).unwrap();
        assert_eq!((body.get("description"), &body["join_approval_mode"]), (None, &json!("auto_approve")));
        assert!(create_group("   ", None, JoinApproval::Automatic).unwrap_err().problem.contains("empty"));
        // Characters, not bytes: 128 accented letters are a subject Meta takes.
        assert!(create_group(&"é".repeat(128), None, JoinApproval::Automatic).is_ok());
        assert!(
            create_group(&"x".repeat(129), None, JoinApproval::Automatic).unwrap_err().problem.contains("at most 128")
        );
        let long = "d".repeat(2049);
        assert!(
            create_group("Team", Some(&long), JoinApproval::Automatic).unwrap_err().problem.contains("at most 2048")
        );
    }

    #[test]
    fn builds_join_request_decisions_and_removals() {
        let ids = vec!["MTY0Njcw".to_string(), "MTY0Njcx".to_string()];
        assert_eq!(
            join_requests(&ids).unwrap(),
            json!({ "messaging_product": "whatsapp", "join_requests": ["MTY0Njcw", "MTY0Njcx"] })
        );
        assert!(join_requests(&[]).is_err());
        assert!(join_requests(&["".to_string()]).is_err());
        assert!(
            join_requests(&["a".into(), "b".into(), "a".into()]).unwrap_err().problem.contains("a is listed twice")
        );

        let body = remove_participants(&["+15551234567".into(), "US.13491208655302741918".into()]).unwrap();
        assert_eq!(body["participants"], json!([{ "user": "+15551234567" }, { "user_id": "US.13491208655302741918" }]));
        assert!(remove_participants(&[]).is_err());
        let nine: Vec<String> = (0..9).map(|i| format!("+1555000000{i}")).collect();
        assert!(remove_participants(&nine).unwrap_err().problem.contains("a group has at most 8"));
        assert!(remove_participants(&["+1555".into(), "+1555".into()]).is_err());
        assert_eq!(reset_invite_link(), json!({ "messaging_product": "whatsapp" }));
    }
}
