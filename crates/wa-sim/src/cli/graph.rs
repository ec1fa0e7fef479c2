//! `wa-sim graph`: a fake Graph API on a fixed port, posting status webhooks back to the
//! channels of a database, printing every request it serves.

use super::Flags;
use super::channels::{DbDirectory, read_channels};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wa_sim::graph::{Directory, Fault, GraphSim, Options};

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

pub(crate) fn graph(flags: Flags) -> Result<(), String> {
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
