//! `wa-sim`: Meta's side of the WhatsApp Cloud API on this machine.
//!
//!   wa-sim graph   [--port 8090] [--dsn DSN] [--webhook-base URL] [--latency-ms N]
//!                  [--fail-share 0.1 --fail-with 130429|5xx|timeout|drop|<code>] [--no-statuses]
//!                  [--templates FILE.json --waba ID] [--media FILE[,FILE...]]
//!   wa-sim trigger <kind> --channel NAME [--dsn DSN] [--webhook-base URL] [--from 16505551234]
//!                  [--name "Sheena Nelson"] [--text "..."] [--wamid ID] [--batch N] [--bad-signature]
//!                  [--group ID] [--failed] [--timestamp UNIX] [--value stop|resume] [--user-id US...] [--code N]
//!   wa-sim trigger <kind> --url URL --app-secret S --phone-number-id P   (credentials by flags)
//!   wa-sim load    --channel NAME [--dsn DSN] [--concurrency 16] [--seconds 15] [--rate R] [--webhook-base URL]
//!                  [--senders 200000] [--sender-offset K] [--new-share 0.05] [--batch N]
//!                  [--mix text=80,image=10,status=10] [--messages N] [--progress SECS] [--ca-file PEM]
//!                  [--stored-in TABLE]
//!   wa-sim outbound-bench [--dsn DSN] [--latency-ms 50] [--messages 10000] [--rate 200] [--seconds 10] [--channels 1]
//!
//! <kind> is a message kind (text, image, audio, voice, video, document, sticker, location,
//! contacts, button_reply, list_reply, button, flow_reply, address_reply, call_permission_reply,
//! reaction, order, system, unsupported) or a status (sent, delivered, read, played, failed;
//! give the outbound message's --wamid; `failed --code 131050`: the customer stopped marketing
//! messages), or `echo` (a text the business sent to --from from the WhatsApp Business app) or
//! `user_id_update --previous US... --current US...` (--from's new BSUID) or `missed_call`
//! (--from called and nobody answered), or `user_preferences --value stop|resume` (--from, or
//! --user-id's BSUID, stopped or resumed marketing messages) or `preference_changed --value ...`
//! (the same as a user_preference_changed system message). --timestamp sets Meta's time of
//! the event (default now).
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
//! --webhook-base https://localhost:PORT and --ca-file with the certificate to trust. For a
//! receiver other than the listener (bench/receiver, at --webhook-base), --stored-in names the
//! table it stores messages in (channel_id, wamid, id), where the run counts them.
//! `outbound-bench` points whatsapp_channel.graph_api_url at an in-process fake Graph API (for
//! the run only; it is put back afterwards), queues messages on a channel `bench_out` and prints
//! a markdown table: delivery rate and COMMIT -> request latency.
//!
//! Each subcommand's body is a file of `cli/`; this file only dispatches to them.

mod cli;

use cli::Flags;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("graph") => cli::graph::graph(Flags::parse(&args[1..])),
        Some("trigger") if args.len() > 1 => cli::trigger::trigger(&args[1], Flags::parse(&args[2..])),
        Some("load") => cli::load::load(Flags::parse(&args[1..])),
        Some("outbound-bench") => cli::outbound_bench::outbound_bench(Flags::parse(&args[1..])),
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
                   [--timestamp UNIX] [--value stop|resume] [--user-id US...] [--code N]
                   [--group ID] [--failed]     (group kinds: group_text, group_create, group_delete, group_join, group_leave, group_suspend;
                                                coexistence kinds: history, history_declined, contacts_sync)
       wa-sim load --channel NAME [--dsn DSN] [--concurrency N] [--seconds S] [--rate R] [--webhook-base URL]
                   [--senders N] [--sender-offset K] [--new-share F] [--batch N] [--mix KIND=W,...] [--messages N] [--progress S] [--ca-file PEM]
       wa-sim outbound-bench [--dsn DSN] [--latency-ms 50] [--messages 10000] [--rate 200] [--seconds 10] [--channels 1]";
