//! The status webhooks Meta posts after accepting a send (`sent`, `delivered`, `read`): when
//! they are due, what they say, and the thread that signs and posts them, retrying as Meta does.

use super::Directory;
use super::sends::is_group_send;
use super::state::State;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Times a status webhook is posted again after it was not answered 200 (a quarter of a
/// second, doubling up to 4 s: about five minutes in all).
const STATUS_RETRIES: u32 = 80;

/// Status webhooks Meta would send after accepting a message, and when.
const STATUS_DELAYS: [(&str, Duration); 3] = [
    ("sent", Duration::from_millis(100)),
    ("delivered", Duration::from_millis(500)),
    ("read", Duration::from_millis(2000)),
];

/// Who is in a group whose participants no test set: two customers, so that the per-participant
/// statuses of a group send are visibly more than one.
pub(super) const DEFAULT_GROUP_PARTICIPANTS: [&str; 2] = ["15550001001", "15550001002"];

/// Queues the status webhooks of an accepted send: one per status for a customer, and for a
/// group one `sent` and per-participant `delivered` and `read`.
pub(super) fn schedule_for_send(state: &State, path: &str, body: &str, wamid: &str) {
    if state.options.statuses.is_none() {
        return;
    }
    let phone_number_id = path.trim_matches('/').split('/').nth(1).unwrap_or_default().to_string();
    let json = serde_json::from_str::<Value>(body).unwrap_or(Value::Null);
    let to = json["to"].as_str().unwrap_or_default();
    // Meta echoes the sender's tracking string on every status of the message.
    let callback = json.get("biz_opaque_callback_data").cloned();
    let echo = |mut envelope: Value| {
        if let (Some(callback), Some(statuses)) =
            (&callback, envelope["entry"][0]["changes"][0]["value"]["statuses"].as_array_mut())
        {
            statuses.iter_mut().for_each(|s| s["biz_opaque_callback_data"] = callback.clone());
        }
        envelope
    };
    if is_group_send(&json) {
        // A group id is taken as sent: it is base64-like, and no character of it is noise.
        let participants = state
            .group_participants
            .lock()
            .unwrap()
            .get(to)
            .cloned()
            .unwrap_or_else(|| DEFAULT_GROUP_PARTICIPANTS.iter().map(|p| p.to_string()).collect());
        let participants: Vec<&str> = participants.iter().map(String::as_str).collect();
        schedule_statuses(state, &phone_number_id, |status, timestamp| {
            let value = crate::payloads::group_status_value(status, wamid, to, &participants, timestamp);
            echo(crate::payloads::envelope(&phone_number_id, value))
        });
    } else {
        let recipient = to.trim_start_matches('+');
        schedule_statuses(state, &phone_number_id, |status, timestamp| {
            echo(crate::payloads::status(&phone_number_id, wamid, status, recipient, timestamp))
        });
    }
}

/// Queues the webhooks of [`STATUS_DELAYS`], each built by `body(status, timestamp)`.
fn schedule_statuses(state: &State, phone_number_id: &str, body: impl Fn(&str, i64) -> Value) {
    let now = Instant::now();
    let mut due = state.callbacks.lock().unwrap();
    for (status, delay) in STATUS_DELAYS {
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        due.push((now + delay, phone_number_id.to_string(), body(status, timestamp), 0));
    }
    state.callback_due.notify_all();
}

/// Posts due status webhooks, signed with the channel's app secret, as Meta does.
pub(super) fn post_statuses(state: &State, directory: &dyn Directory) {
    // (Without the cache, ureq would start a thread to resolve the listener's host for every callback.)
    let agent = cached_resolver::agent(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build(),
    );
    let mut due = state.callbacks.lock().unwrap();
    loop {
        due.sort_by_key(|(at, ..)| std::cmp::Reverse(*at));
        let wait = match due.last() {
            None => Duration::from_secs(3600),
            Some((at, ..)) => at.saturating_duration_since(Instant::now()),
        };
        if !wait.is_zero() {
            due = state.callback_due.wait_timeout(due, wait).unwrap().0;
            continue;
        }
        let (_, phone_number_id, body, failures) = due.pop().expect("checked above");
        drop(due);
        let mut again = None;
        match directory.lookup(&phone_number_id) {
            Some(target) => {
                let bytes = body.to_string().into_bytes();
                let signature = whatsapp_cloud::signature::sign(target.app_secret.as_bytes(), &bytes);
                let result = agent
                    .post(&target.url)
                    .content_type("application/json")
                    .header(whatsapp_cloud::signature::HEADER, &signature)
                    .send(&bytes[..]);
                let failure = match result {
                    Ok(r) if r.status().as_u16() == 200 => None,
                    Ok(r) => Some(format!("answered {}", r.status())),
                    Err(e) => Some(format!("failed: {e}")),
                };
                match failure {
                    None => {
                        let status = &body["entry"][0]["changes"][0]["value"]["statuses"][0];
                        let key = |k: &str| status[k].as_str().unwrap_or_default().to_string();
                        state.statuses_posted.lock().unwrap().push((key("id"), key("status")));
                    }
                    // Meta retries a webhook that was not answered 200, for days; this, for
                    // about five minutes.
                    Some(why) if failures < STATUS_RETRIES => {
                        eprintln!("wa-sim: status webhook to {} {why}; retrying", target.url);
                        let delay = Duration::from_millis(250 << failures.min(4));
                        again = Some((Instant::now() + delay, phone_number_id, body, failures + 1));
                    }
                    Some(why) => eprintln!("wa-sim: status webhook to {} {why}; giving up", target.url),
                }
            }
            None => eprintln!("wa-sim: no webhook known for phone_number_id {phone_number_id}; status not posted"),
        }
        due = state.callbacks.lock().unwrap();
        due.extend(again);
    }
}
