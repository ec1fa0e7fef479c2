//! `wa-sim trigger <kind>`: one signed webhook of any kind Meta sends, posted to a channel's
//! listener (or `--batch` of them in one POST).

use super::Flags;
use super::channels::read_channels;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};
use wa_sim::payloads::{
    self, BUSINESS_KINDS, Customer, GROUP_KINDS, HISTORY_KINDS, HistoryMessage, MESSAGE_KINDS, STATUS_KINDS,
};

pub(crate) fn trigger(kind: &str, flags: Flags) -> Result<(), String> {
    let (url, app_secret, phone_number_id) =
        match (flags.get("url"), flags.get("app-secret"), flags.get("phone-number-id")) {
            (Some(u), Some(s), Some(p)) => (u.to_string(), s.to_string(), p.to_string()),
            _ => {
                let dsn = flags
                    .dsn()
                    .ok_or("give --dsn (or $WA_DSN) and --channel, or --url, --app-secret and --phone-number-id")?;
                let name = flags.get("channel").ok_or("give --channel NAME")?;
                let (channels, listener) = read_channels(&dsn)?;
                let c = channels
                    .into_iter()
                    .find(|c| c.name == name)
                    .ok_or(format!("no channel named {name:?} in {dsn}"))?;
                let base = flags.get("webhook-base").map(str::to_string).unwrap_or(listener);
                (format!("{}/webhook/{}", base.trim_end_matches('/'), c.name), c.app_secret, c.phone_number_id)
            }
        };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Meta's time of the event, when it matters which of two is newer (marketing preferences).
    let now: u64 = flags.num("timestamp", now)?;
    if BUSINESS_KINDS.contains(&kind) {
        // What Meta says about the business comes on the account's entry: --waba (the
        // channel's wa_channels.waba_id), --timestamp (Unix seconds, as for any kind: older
        // events must not override newer ones), --text the template's name.
        let template = flags.get("text").unwrap_or("order_update");
        let (field, value) = payloads::business_change(kind, template, "15550783881").expect("a business kind");
        let waba = flags.get("waba").unwrap_or("102290129340398");
        let body = payloads::business_body(waba, &phone_number_id, field, value, now as i64).to_string().into_bytes();
        return post(&url, &app_secret, &flags, body, &format!("{kind} ({field})"));
    }
    let customer = Customer {
        wa_id: flags.get("from").unwrap_or("16505551234").to_string(),
        name: flags.get("name").unwrap_or("Sheena Nelson").to_string(),
    };
    let text = flags.get("text").unwrap_or("Does it come in another color?");
    let batch = flags.num("batch", 1usize)?.max(1);
    let values = (0..batch)
        .map(|i| {
            let wamid = match flags.get("wamid") {
                Some(w) if batch == 1 => w.to_string(),
                Some(w) => format!("{w}.{i}"),
                None => format!("wamid.SIM.{now}.{}.{i}", std::process::id()),
            };
            if kind == "echo" {
                return Ok(payloads::echo_value(&wamid, &customer.wa_id, text, now as i64));
            }
            if let Some(value) = group_or_history_value(kind, &flags, &wamid, &customer, text, now as i64) {
                return value;
            }
            if kind == "missed_call" {
                let call_id = format!("wacid.{wamid}");
                return Ok(payloads::call_value(
                    &call_id,
                    &customer.wa_id,
                    "terminate",
                    Some("FAILED"),
                    None,
                    now as i64,
                ));
            }
            if kind == "user_id_update" {
                let (previous, current) = (flags.get("previous"), flags.get("current"));
                let (Some(previous), Some(current)) = (previous, current) else {
                    return Err("a user_id_update needs --previous and --current BSUIDs".to_string());
                };
                return Ok(payloads::user_id_update_value(&customer.wa_id, previous, current, now as i64));
            }
            if kind == "user_preferences" || kind == "preference_changed" {
                let value = flags.get("value").unwrap_or("stop");
                if !matches!(value, "stop" | "resume") {
                    return Err(format!("--value {value:?}: a marketing preference is stop or resume"));
                }
                return Ok(if kind == "user_preferences" {
                    payloads::user_preferences_value(&customer, flags.get("user-id"), value, now as i64)
                } else {
                    payloads::preference_system_value(&wamid, &customer, value, now as i64)
                });
            }
            if kind == "failed" && flags.has("code") && flags.has("wamid") {
                let code: i64 = flags.num("code", 131049)?;
                return Ok(payloads::failed_status_value(&wamid, &customer.wa_id, code, now as i64));
            }
            if STATUS_KINDS.contains(&kind) {
                if !flags.has("wamid") {
                    return Err(format!(
                        "a {kind} status needs --wamid of the outbound message (see wa_messages.wamid)"
                    ));
                }
                Ok(payloads::status_value(kind, &wamid, &customer.wa_id, now as i64))
            } else {
                payloads::message_value(kind, &wamid, &customer, text, now as i64).ok_or(format!(
                    "unknown kind {kind:?}; messages: {}; statuses: {}; others: {}; groups: {}; coexistence: {}; business: {}",
                    MESSAGE_KINDS.join(", "),
                    STATUS_KINDS.join(", "),
                    payloads::OTHER_KINDS.join(", "),
                    GROUP_KINDS.join(", "),
                    HISTORY_KINDS.join(", "),
                    BUSINESS_KINDS.join(", ")
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let body = payloads::batch(&phone_number_id, values).to_string().into_bytes();
    post(&url, &app_secret, &flags, body, &format!("{kind} x{batch} from +{}", customer.wa_id))
}

/// Signs and posts one body to the listener at `url`.
fn post(url: &str, app_secret: &str, flags: &Flags, body: Vec<u8>, what: &str) -> Result<(), String> {
    let secret = if flags.has("bad-signature") { "0000000000000000000000000000000f" } else { app_secret };
    let signature = whatsapp_cloud::signature::sign(secret.as_bytes(), &body);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(url)
        .content_type("application/json")
        .header(whatsapp_cloud::signature::HEADER, &signature)
        .send(&body[..])
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    let answer = response.body_mut().read_to_string().unwrap_or_default();
    println!("wa-sim trigger: POST {what} to {url}: {status} {answer}");
    if status == 200 || flags.has("bad-signature") { Ok(()) } else { Err(format!("the listener answered {status}")) }
}

/// The `changes[].value` of a group or coexistence `kind` (`None` for any other kind).
fn group_or_history_value(
    kind: &str,
    flags: &Flags,
    wamid: &str,
    customer: &Customer,
    text: &str,
    now: i64,
) -> Option<Result<Value, String>> {
    if GROUP_KINDS.contains(&kind) {
        let Some(group) = flags.get("group").filter(|g| !g.is_empty()) else {
            return Some(Err(format!("a {kind} needs --group ID (the group's id, as Meta gave it)")));
        };
        let from = [customer.wa_id.as_str()];
        return Some(Ok(match kind {
            "group_text" => {
                payloads::group_message_value("text", wamid, group, customer, text, now).expect("text is a known kind")
            }
            "group_create" | "group_delete" => {
                payloads::group_lifecycle_value(kind, group, text, now, flags.has("failed"))
            }
            "group_join" => payloads::group_participants_value("group_participants_add", group, &from, now),
            "group_leave" => payloads::group_participants_value("group_participants_remove", group, &from, now),
            _ => payloads::group_suspension_value("group_suspend", group, now),
        }));
    }
    let value = match kind {
        "history" => {
            let message = |n: u32, from_business: bool, body: &str, timestamp: i64, status: &str| HistoryMessage {
                wamid: format!("{wamid}.{n}"),
                from_business,
                kind: "text".to_string(),
                body: body.to_string(),
                timestamp,
                status: status.to_string(),
            };
            let greeting = format!("Hello {}, how can we help?", customer.name);
            let thread = vec![message(1, true, &greeting, now - 60, "READ"), message(2, false, text, now, "DELIVERED")];
            payloads::history_value(0, 1, 100, &[(customer.wa_id.clone(), thread)])
        }
        "history_declined" => payloads::history_declined_value(),
        "contacts_sync" => payloads::state_sync_value(&[(&customer.wa_id, &customer.name, "add")], now),
        _ => return None,
    };
    Some(Ok(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bounded_http::{Limits, Request, Response};
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// Keeps the bodies `trigger` posts, checking each one's signature as the listener would.
    #[derive(Default)]
    struct Inbox(Mutex<Vec<Value>>);

    impl bounded_http::Handler for Inbox {
        fn handle(&self, request: Request) -> Response {
            let signature = request.header(whatsapp_cloud::signature::HEADER).unwrap_or_default();
            assert_eq!(signature, whatsapp_cloud::signature::sign(b"s3cret", &request.body));
            self.0.lock().unwrap().push(serde_json::from_slice(&request.body).unwrap());
            Response::text(200, "ok")
        }
    }

    const GROUP: &str = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD";

    /// Runs `wa-sim trigger <kind> <args>` against a local listener; the one change it posted.
    fn trigger_one(kind: &str, args: &[&str]) -> (String, Value) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let url = format!("http://{}/webhook/c", listener.local_addr().unwrap());
        let inbox = Arc::new(Inbox::default());
        bounded_http::serve(listener, Limits::default(), bounded_http::Tls::plain(), inbox.clone()).unwrap();
        let mut all: Vec<String> = ["--url", &url, "--app-secret", "s3cret", "--phone-number-id", "77"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect();
        all.extend(["--from", "16505551234", "--name", "Sheena Nelson", "--wamid", "wamid.T"].map(String::from));
        trigger(kind, Flags::parse(&all)).unwrap();
        let body = inbox.0.lock().unwrap().pop().unwrap();
        let change = &body["entry"][0]["changes"][0];
        assert_eq!(change["value"]["metadata"]["phone_number_id"], "77");
        (change["field"].as_str().unwrap().to_string(), change["value"].clone())
    }

    #[test]
    fn group_kinds_post_group_webhooks() {
        let (field, value) = trigger_one("group_text", &["--group", GROUP, "--text", "hi all"]);
        assert_eq!(field, "messages");
        let m = &value["messages"][0];
        assert_eq!((m["group_id"].as_str(), m["from"].as_str()), (Some(GROUP), Some("16505551234")));
        assert_eq!((m["id"].as_str(), m["text"]["body"].as_str()), (Some("wamid.T"), Some("hi all")));

        let (field, value) = trigger_one("group_create", &["--group", GROUP, "--text", "Support"]);
        assert_eq!(field, "group_lifecycle_update");
        assert_eq!(value["groups"][0]["subject"], "Support");
        assert!(value["groups"][0]["invite_link"].is_string());
        let (_, value) = trigger_one("group_create", &["--group", GROUP, "--failed"]);
        assert!(value["groups"][0]["errors"].is_array());
        let (field, value) = trigger_one("group_delete", &["--group", GROUP]);
        assert_eq!(
            (field.as_str(), value["groups"][0]["type"].as_str()),
            ("group_lifecycle_update", Some("group_delete"))
        );

        let (field, value) = trigger_one("group_join", &["--group", GROUP]);
        assert_eq!(field, "group_participants_update");
        assert_eq!(value["groups"][0]["added_participants"], json!([{ "wa_id": "16505551234" }]));
        let (field, value) = trigger_one("group_leave", &["--group", GROUP]);
        assert_eq!(field, "group_participants_update");
        assert_eq!(value["groups"][0]["removed_participants"], json!([{ "wa_id": "16505551234" }]));

        let (field, value) = trigger_one("group_suspend", &["--group", GROUP]);
        assert_eq!(
            (field.as_str(), value["groups"][0]["type"].as_str()),
            ("group_status_update", Some("group_suspend"))
        );
    }

    #[test]
    fn group_kinds_need_a_group() {
        let flags = Flags::parse(
            &["--url", "http://127.0.0.1:1/x", "--app-secret", "s", "--phone-number-id", "1"].map(String::from),
        );
        assert!(trigger("group_join", flags).unwrap_err().contains("--group"));
    }

    #[test]
    fn coexistence_kinds_post_history_and_contacts() {
        let (field, value) = trigger_one("history", &["--text", "Is it in stock?"]);
        assert_eq!(field, "history");
        let chunk = &value["history"][0];
        assert_eq!(chunk["metadata"], json!({ "phase": 0, "chunk_order": 1, "progress": 100 }));
        let thread = &chunk["threads"][0];
        assert_eq!(thread["id"], "16505551234");
        let messages = thread["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(
            (messages[0]["from"].as_str(), messages[0]["id"].as_str()),
            (Some("15550783881"), Some("wamid.T.1"))
        );
        assert_eq!(
            (messages[1]["from"].as_str(), messages[1]["id"].as_str()),
            (Some("16505551234"), Some("wamid.T.2"))
        );
        assert_eq!(messages[1]["text"]["body"], "Is it in stock?");
        assert!(messages[0]["timestamp"].as_str().unwrap() < messages[1]["timestamp"].as_str().unwrap());

        let (field, value) = trigger_one("history_declined", &[]);
        assert_eq!((field.as_str(), value["history"][0]["errors"][0]["code"].as_i64()), ("history", Some(2593109)));

        let (field, value) = trigger_one("contacts_sync", &[]);
        assert_eq!(field, "smb_app_state_sync");
        let item = &value["state_sync"][0];
        assert_eq!(
            item["contact"],
            json!({ "full_name": "Sheena Nelson", "first_name": "Sheena", "phone_number": "16505551234" })
        );
        assert_eq!(item["action"], "add");
    }
}
