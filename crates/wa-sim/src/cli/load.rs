//! `wa-sim load`: the inbound load generator, pointed at a channel of the database.

use super::Flags;
use super::channels::read_channels;
use std::time::Duration;
use wa_sim::customers::Mix;

pub(crate) fn load(flags: Flags) -> Result<(), String> {
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
        stored_in: flags.get("stored-in").unwrap_or("wa_messages").to_string(),
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
