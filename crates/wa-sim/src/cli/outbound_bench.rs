//! `wa-sim outbound-bench`: the outbound benchmark against the database's delivery worker.

use super::Flags;
use std::time::Duration;

pub(crate) fn outbound_bench(flags: Flags) -> Result<(), String> {
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
