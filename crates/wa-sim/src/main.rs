//! `wa-sim`: Meta's side of the WhatsApp Cloud API on this machine.
//!
//!   wa-sim graph   [--port 8090] [--dsn DSN] [--webhook-base URL] [--latency-ms N]
//!                  [--fail-share 0.1 --fail-with 130429|5xx|timeout|drop|<code>] [--no-statuses]
//!                  [--templates FILE.json --waba ID] [--media FILE[,FILE...]]
//!   wa-sim trigger <kind> --channel NAME [--dsn DSN] [--webhook-base URL] [--from 16505551234]
//!                  [--name "Sheena Nelson"] [--text "..."] [--wamid ID] [--batch N] [--bad-signature]
//!                  [--group ID] [--failed]
//!   wa-sim trigger <kind> --url URL --app-secret S --phone-number-id P   (credentials by flags)
//!   wa-sim load    --channel NAME [--dsn DSN] [--concurrency 16] [--seconds 15] [--rate R] [--webhook-base URL]
//!                  [--senders 200000] [--sender-offset K] [--new-share 0.05] [--batch N]
//!                  [--mix text=80,image=10,status=10] [--messages N] [--progress SECS] [--ca-file PEM]
//!   wa-sim outbound-bench [--dsn DSN] [--latency-ms 50] [--messages 10000] [--rate 200] [--seconds 10] [--channels 1]
//!
//! <kind> is a message kind (text, image, audio, voice, video, document, sticker, location,
//! contacts, button_reply, list_reply, button, reaction, order, system, unsupported) or a
//! status (sent, delivered, read, played, failed; give the outbound message's --wamid), or
//! `echo` (a text the business sent to --from from the WhatsApp Business app) or
//! `user_id_update --previous US... --current US...` (--from's new BSUID) or `missed_call`
//! (--from called and nobody answered).
//! Group kinds need --group ID (Meta's group id): `group_text` (--from writes --text in the
//! group), `group_create` / `group_delete` (--text is the subject; --failed: the operation
//! failed), `group_join` / `group_leave` (--from joins by invite link, or leaves) and
//! `group_suspend`. Coexistence onboarding kinds: `history` (one chunk, phase 0, chunk 1,
//! progress 100, of one thread with --from: the business's message <wamid>.1, then --from's
//! reply <wamid>.2 saying --text), `history_declined` (the business turned history sharing
//! off) and `contacts_sync` (the business app's contact --from, named --name, added).
//! DSN defaults to $WA_DSN; channel credentials and the listener address are read from it.
//! `load` posts signed webhooks from N keep-alive connections for S seconds, or until
//! --messages messages are sent (loopback only; back to back, or R POSTs/s in all with --rate)
//! and prints one line of key=value: answers, committed messages/s, POST -> NOTIFY and HTTP
//! latency, messages and POSTs sent. Each message comes from a customer picked at random from a
//! pool of --senders (default 200,000; customer i is wa_id 1555 + i in 7 digits, "Customer i",
//! i from --sender-offset), or for --new-share of them from a customer who never wrote; each
//! POST carries --batch items (default 1) of the --mix (default text only; `status` is a
//! delivered/read webhook for a wamid that does not exist). For an https listener give
//! --webhook-base https://localhost:PORT and --ca-file with the certificate to trust.
//! `outbound-bench` points whatsapp_channel.graph_api_url at an in-process fake Graph API (for
//! the run only; it is put back afterwards), queues messages on a channel `bench_out` and prints
//! a markdown table: delivery rate and COMMIT -> request latency.

use serde_json::Value;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wa_sim::customers::Mix;
use wa_sim::graph::{Directory, Fault, GraphSim, Options, WebhookTarget};
use wa_sim::payloads::{self, Customer, GROUP_KINDS, HISTORY_KINDS, HistoryMessage, MESSAGE_KINDS, STATUS_KINDS};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("graph") => graph(Flags::parse(&args[1..])),
        Some("trigger") if args.len() > 1 => trigger(&args[1], Flags::parse(&args[2..])),
        Some("load") => load(Flags::parse(&args[1..])),
        Some("outbound-bench") => outbound_bench(Flags::parse(&args[1..])),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wa-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: wa-sim graph [--port N] [--dsn DSN] [--latency-ms N] [--fail-share F --fail-with KIND] [--no-statuses] [--templates FILE --waba ID] [--media FILES]
       wa-sim trigger <kind> --channel NAME [--dsn DSN] [--from DIGITS] [--name NAME] [--text TEXT] [--wamid ID] [--batch N] [--bad-signature]
                   [--group ID] [--failed]     (group kinds: group_text, group_create, group_delete, group_join, group_leave, group_suspend;
                                                coexistence kinds: history, history_declined, contacts_sync)
       wa-sim load --channel NAME [--dsn DSN] [--concurrency N] [--seconds S] [--rate R] [--webhook-base URL]
                   [--senders N] [--sender-offset K] [--new-share F] [--batch N] [--mix KIND=W,...] [--messages N] [--progress S] [--ca-file PEM]
       wa-sim outbound-bench [--dsn DSN] [--latency-ms 50] [--messages 10000] [--rate 200] [--seconds 10] [--channels 1]";

/// `--key value` and `--switch` flags.
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Flags {
        let mut map = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let key = args[i].trim_start_matches("--").to_string();
            match args.get(i + 1).filter(|v| !v.starts_with("--")) {
                Some(value) => {
                    map.insert(key, value.clone());
                    i += 2;
                }
                None => {
                    map.insert(key, String::new());
                    i += 1;
                }
            }
        }
        Flags(map)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        self.get(key).map_or(Ok(default), |v| v.parse().map_err(|_| format!("--{key} {v:?} is not a number")))
    }

    fn dsn(&self) -> Option<String> {
        self.get("dsn").map(str::to_string).or_else(|| std::env::var("WA_DSN").ok())
    }
}

/// A channel as the simulator needs it.
#[derive(Clone)]
struct ChannelRow {
    name: String,
    phone_number_id: String,
    access_token: String,
    app_secret: String,
}

/// Reads channels and the listener's address from the database.
fn read_channels(dsn: &str) -> Result<(Vec<ChannelRow>, String), String> {
    let mut client =
        postgres::Client::connect(dsn, postgres::NoTls).map_err(|e| format!("connecting to {dsn}: {e}"))?;
    let rows = client
        .query(
            "SELECT c.name, c.phone_number_id, s.access_token, s.app_secret
               FROM wa_channels c JOIN wa_channel_secrets s ON s.channel_id = c.id",
            &[],
        )
        .map_err(|e| format!("reading channels: {e}"))?;
    let listen: Option<String> = client
        .query_one("SELECT current_setting('whatsapp_channel.listen_address', true)", &[])
        .map_err(|e| e.to_string())?
        .get(0);
    let channels = rows
        .iter()
        .map(|r| ChannelRow { name: r.get(0), phone_number_id: r.get(1), access_token: r.get(2), app_secret: r.get(3) })
        .collect();
    Ok((channels, format!("http://{}", listen.unwrap_or_else(|| "127.0.0.1:8080".into()))))
}

/// Looks channels up in the database, again on a miss (a channel added after start).
struct DbDirectory {
    dsn: String,
    webhook_base: Option<String>,
    cache: Mutex<HashMap<String, WebhookTarget>>,
}

impl DbDirectory {
    fn refresh(&self) -> Result<(), String> {
        let (channels, listener) = read_channels(&self.dsn)?;
        let base = self.webhook_base.clone().unwrap_or(listener);
        let mut cache = self.cache.lock().unwrap();
        for c in channels {
            let url = format!("{}/webhook/{}", base.trim_end_matches('/'), c.name);
            cache.insert(c.phone_number_id, WebhookTarget { url, app_secret: c.app_secret });
        }
        Ok(())
    }
}

impl Directory for DbDirectory {
    fn lookup(&self, phone_number_id: &str) -> Option<WebhookTarget> {
        if let Some(t) = self.cache.lock().unwrap().get(phone_number_id) {
            return Some(t.clone());
        }
        if let Err(e) = self.refresh() {
            eprintln!("wa-sim: {e}");
        }
        self.cache.lock().unwrap().get(phone_number_id).cloned()
    }
}

fn parse_fault(kind: &str) -> Result<Fault, String> {
    Ok(match kind {
        "429" | "130429" => Fault::meta(130429),
        "5xx" => Fault::meta(2),
        "timeout" => Fault::Timeout(Duration::from_secs(120)),
        "drop" => Fault::Drop,
        code => Fault::meta(
            code.parse().map_err(|_| format!("--fail-with {code:?}: use 429, 5xx, timeout, drop or an error code"))?,
        ),
    })
}

fn graph(flags: Flags) -> Result<(), String> {
    let port = flags.num("port", 8090u16)?;
    let fault = flags.get("fail-with").map(parse_fault).transpose()?;
    let fault_share = flags.num("fail-share", if fault.is_some() { 1.0 } else { 0.0 })?;
    let directory: Option<Arc<dyn Directory>> = match (flags.dsn(), flags.has("no-statuses")) {
        (Some(dsn), false) => Some(Arc::new(DbDirectory {
            dsn,
            webhook_base: flags.get("webhook-base").map(str::to_string),
            cache: Mutex::default(),
        })),
        _ => None,
    };
    let options = Options {
        latency: Duration::from_millis(flags.num("latency-ms", 0u64)?),
        fault_share,
        fault,
        statuses: directory.clone(),
    };
    let sim = GraphSim::start_with(port, options).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    // Templates Meta would list for a business account (a JSON array as in Meta's `data`).
    if let Some(file) = flags.get("templates") {
        let waba = flags.get("waba").ok_or("--templates needs --waba <WhatsApp Business Account id>")?;
        let text = std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?;
        let list: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{file} is not JSON: {e}"))?;
        sim.set_templates(waba, list);
        println!("wa-sim graph: serving the templates of {file} for business account {waba}");
    }
    // Files served as media, as if customers had sent them: use the printed ids in webhooks.
    for file in flags.get("media").map(|m| m.split(',').collect::<Vec<_>>()).unwrap_or_default() {
        let bytes = std::fs::read(file).map_err(|e| format!("reading {file}: {e}"))?;
        let mime = match file.rsplit('.').next().unwrap_or_default().to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" => "image/jpeg",
            "png" => "image/png",
            "webp" => "image/webp",
            "ogg" | "opus" => "audio/ogg",
            "mp3" => "audio/mpeg",
            "mp4" => "video/mp4",
            "pdf" => "application/pdf",
            _ => "application/octet-stream",
        };
        let id = sim.add_media(mime, bytes);
        println!("wa-sim graph: serving {file} ({mime}) as media id {id}");
    }
    // With a database, require each channel's own access token, as Meta does.
    if let Some(dsn) = flags.dsn() {
        let (channels, _) = read_channels(&dsn)?;
        for c in &channels {
            sim.require_token(&c.phone_number_id, &c.access_token);
        }
    }
    println!(
        "wa-sim graph: fake Graph API on {} ({}); set whatsapp_channel.graph_api_url to it",
        sim.url(),
        if directory.is_some() {
            "posting signed sent/delivered/read webhooks back"
        } else {
            "no status webhooks: give --dsn"
        }
    );
    let mut seen = 0;
    loop {
        let received = sim.wait_for(seen + 1, Duration::from_secs(3600), |_| true);
        for r in received.iter().skip(seen) {
            let to = r.json()["to"].as_str().unwrap_or("?").to_string();
            match &r.wamid {
                Some(w) => println!("wa-sim graph: {} {} to {to}: accepted as {w}", r.method, r.path),
                None if matches!(r.endpoint(), "messages" | "marketing_messages") => {
                    println!("wa-sim graph: {} {} to {to}: answered with an error", r.method, r.path)
                }
                None => println!("wa-sim graph: {} {}: served", r.method, r.path),
            }
        }
        seen = received.len();
    }
}

fn trigger(kind: &str, flags: Flags) -> Result<(), String> {
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
            if STATUS_KINDS.contains(&kind) {
                if !flags.has("wamid") {
                    return Err(format!(
                        "a {kind} status needs --wamid of the outbound message (see wa_messages.wamid)"
                    ));
                }
                Ok(payloads::status_value(kind, &wamid, &customer.wa_id, now as i64))
            } else {
                payloads::message_value(kind, &wamid, &customer, text, now as i64).ok_or(format!(
                    "unknown kind {kind:?}; messages: {}; statuses: {}; others: {}; groups: {}; coexistence: {}",
                    MESSAGE_KINDS.join(", "),
                    STATUS_KINDS.join(", "),
                    payloads::OTHER_KINDS.join(", "),
                    GROUP_KINDS.join(", "),
                    HISTORY_KINDS.join(", ")
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let body = payloads::batch(&phone_number_id, values).to_string().into_bytes();
    let secret = if flags.has("bad-signature") { "0000000000000000000000000000000f".to_string() } else { app_secret };
    let signature = whatsapp_cloud::signature::sign(secret.as_bytes(), &body);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(&url)
        .content_type("application/json")
        .header(whatsapp_cloud::signature::HEADER, &signature)
        .send(&body[..])
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    let answer = response.body_mut().read_to_string().unwrap_or_default();
    println!("wa-sim trigger: POST {kind} x{batch} from +{} to {url}: {status} {answer}", customer.wa_id);
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

fn load(flags: Flags) -> Result<(), String> {
    let dsn = flags.dsn().ok_or("give --dsn (or $WA_DSN)")?;
    let name = flags.get("channel").ok_or("give --channel NAME")?;
    let (channels, listener) = read_channels(&dsn)?;
    let c = channels.into_iter().find(|c| c.name == name).ok_or(format!("no channel named {name:?} in {dsn}"))?;
    let base = flags.get("webhook-base").map(str::to_string).unwrap_or(listener);
    let options = wa_sim::load::LoadOptions {
        url: format!("{}/webhook/{}", base.trim_end_matches('/'), c.name),
        app_secret: c.app_secret,
        phone_number_id: c.phone_number_id,
        dsn,
        channel: c.name,
        concurrency: flags.num("concurrency", 16usize)?,
        // With --messages the count ends the run; the time (4 h unless given) only bounds it.
        duration: Duration::from_secs_f64(
            flags.num("seconds", if flags.has("messages") { 4.0 * 3600.0 } else { 15.0f64 })?.clamp(0.0, 86_400.0),
        ),
        rate: flags.get("rate").map(|_| flags.num("rate", 0.0f64)).transpose()?,
        senders: flags.num("senders", 200_000u64)?,
        sender_offset: flags.num("sender-offset", 0u64)?,
        new_share: flags.num("new-share", 0.0f64)?,
        batch: flags.num("batch", 1usize)?,
        mix: flags.get("mix").map(Mix::parse).transpose()?.unwrap_or_default(),
        max_messages: flags.get("messages").map(|_| flags.num("messages", 0u64)).transpose()?,
        trusted_pem: flags
            .get("ca-file")
            .map(|f| std::fs::read(f).map_err(|e| format!("--ca-file {f}: {e}")))
            .transpose()?,
        progress: flags
            .get("progress")
            .map(|_| flags.num("progress", 10.0f64))
            .transpose()?
            .map(|s| Duration::from_secs_f64(s.clamp(1.0, 3600.0))),
    };
    let report = wa_sim::load::run(&options)?;
    println!("wa-sim load: {report}");
    if let Some(e) = &report.first_error {
        eprintln!("wa-sim load: first transport error: {e}");
    }
    Ok(())
}

fn outbound_bench(flags: Flags) -> Result<(), String> {
    let options = wa_sim::outbound_bench::OutboundOptions {
        dsn: flags.dsn().ok_or("give --dsn (or $WA_DSN)")?,
        latency: Duration::from_millis(flags.num("latency-ms", 50u64)?),
        messages: flags.num("messages", 10_000usize)?.clamp(1, 1_000_000),
        rate: flags.num("rate", 200.0f64)?.clamp(0.0, 10_000.0),
        channels: flags.num("channels", 1usize)?.clamp(1, 64),
        seconds: flags.num("seconds", 10.0f64)?.clamp(0.0, 3600.0),
    };
    let report = wa_sim::outbound_bench::run(&options)?;
    print!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bounded_http::{Limits, Request, Response};
    use serde_json::json;

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
