//! What the counters mean, as samples: rendered in Prometheus' text format for `GET /metrics`
//! and returned as rows by `wa_metrics` (for sql_exporter users), so both show the same
//! figures. Pure: a [`Snapshot`] and the channel names in, text out.

use crate::{
    BUCKETS, CHANNEL_COUNTERS, CHANNEL_GAUGES, ChannelCounter, ChannelGauge, GLOBAL_COUNTERS, GlobalCounter,
    HISTOGRAMS, Histogram, Snapshot,
};
use std::collections::HashMap;
use std::fmt::Write;

/// Every metric's name starts with this.
const PREFIX: &str = "whatsapp_channel_";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: name (without the prefix), type and help text.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, kind, help }
}

const WEBHOOK_POSTS: Family = family(
    "webhook_posts_total",
    Kind::Counter,
    "Signed webhook POSTs by outcome (stored, partial, incomplete, invalid_payload) and POSTs refused for their signature.",
);
const HANDSHAKES: Family =
    family("webhook_handshakes_total", Kind::Counter, "Meta's GET verification handshakes by outcome.");
const UNROUTED: Family = family(
    "webhook_unrouted_changes_total",
    Kind::Counter,
    "Changes for a phone_number_id no channel of the app has (kept raw only).",
);
const MESSAGES: Family = family(
    "messages_stored_total",
    Kind::Counter,
    "Messages stored by the webhook listeners, inbound and echoes (redeliveries not counted).",
);
const STATUSES: Family = family(
    "statuses_stored_total",
    Kind::Counter,
    "Message statuses stored by the webhook listeners (redeliveries not counted).",
);
const SENDS: Family = family(
    "sends_total",
    Kind::Counter,
    "Graph API sends by result: sent, retried, failed, paused (access token refused).",
);
const SEND_ERRORS: Family = family(
    "send_errors_total",
    Kind::Counter,
    "Graph API errors by retry class (throttle, transient, pair_limit, few, credentials, permanent, transport).",
);
const MEDIA: Family = family("media_downloads_total", Kind::Counter, "Inbound media downloads by result.");
const QUEUE_DEPTH: Family =
    family("queue_depth", Kind::Gauge, "Outbound messages queued or being sent, as last measured (every few seconds).");
const QUEUE_AGE: Family = family(
    "queue_oldest_age_seconds",
    Kind::Gauge,
    "Age of the oldest outbound message queued or being sent; 0 when none.",
);
const INCOMPLETE_EVENTS: Family = family(
    "webhook_events_incomplete",
    Kind::Gauge,
    "Stored webhook POSTs with items not stored yet for a database reason (kept and replayed until they are).",
);
const UNKNOWN_FIELDS: Family = family(
    "webhook_unknown_fields_total",
    Kind::Counter,
    "Webhook changes of a field this version does not understand, per field (kept raw until replayed or past retention).",
);
const LISTENER: Family = family(
    "webhook_refused_total",
    Kind::Counter,
    "Webhook requests and connections refused before a channel could be named, by reason.",
);
const HANDOVER: Family = family(
    "listener_handover_total",
    Kind::Counter,
    "Webhook POSTs a listener worker offered to the first worker's batches: taken (answered by it), kept (stored by the worker that received them: large, busy, or the first declined or was away), lost (the first went away first: answered 503, and Meta redelivers).",
);
const BATCH_POSTS: Family =
    family("listener_batch_posts", Kind::Histogram, "Webhook POSTs stored per listener transaction.");
const COMMIT_SECONDS: Family =
    family("listener_commit_seconds", Kind::Histogram, "Time from the start of a listener transaction to its COMMIT.");
const SEND_SECONDS: Family = family("send_seconds", Kind::Histogram, "Time of one Graph API send, request to answer.");
const WORKER_UP: Family = family("worker_up", Kind::Gauge, "1 when the worker runs.");

/// A counter's family and its own label, if any.
type FamilyAndLabel = (&'static Family, Option<(&'static str, &'static str)>);

/// Each per-channel counter, with its family and label: one row per variant (a test checks it).
const CHANNEL_SAMPLES: [(ChannelCounter, FamilyAndLabel); CHANNEL_COUNTERS] = {
    use ChannelCounter::*;
    [
        (PostStored, (&WEBHOOK_POSTS, Some(("outcome", "stored")))),
        (PostPartial, (&WEBHOOK_POSTS, Some(("outcome", "partial")))),
        (PostIncomplete, (&WEBHOOK_POSTS, Some(("outcome", "incomplete")))),
        (PostInvalidPayload, (&WEBHOOK_POSTS, Some(("outcome", "invalid_payload")))),
        (PostSignatureMismatch, (&WEBHOOK_POSTS, Some(("outcome", "signature_mismatch")))),
        (HandshakeVerified, (&HANDSHAKES, Some(("outcome", "verified")))),
        (HandshakeTokenMismatch, (&HANDSHAKES, Some(("outcome", "verify_token_mismatch")))),
        (UnroutedChanges, (&UNROUTED, None)),
        (SendSent, (&SENDS, Some(("result", "sent")))),
        (SendRetried, (&SENDS, Some(("result", "retried")))),
        (SendFailed, (&SENDS, Some(("result", "failed")))),
        (SendPaused, (&SENDS, Some(("result", "paused")))),
        (ErrorThrottle, (&SEND_ERRORS, Some(("class", "throttle")))),
        (ErrorTransient, (&SEND_ERRORS, Some(("class", "transient")))),
        (ErrorPairLimit, (&SEND_ERRORS, Some(("class", "pair_limit")))),
        (ErrorFew, (&SEND_ERRORS, Some(("class", "few")))),
        (ErrorCredentials, (&SEND_ERRORS, Some(("class", "credentials")))),
        (ErrorPermanent, (&SEND_ERRORS, Some(("class", "permanent")))),
        (ErrorTransport, (&SEND_ERRORS, Some(("class", "transport")))),
    ]
};

/// Each product-wide counter, with its family and label: one row per variant.
const GLOBAL_SAMPLES: [(GlobalCounter, FamilyAndLabel); GLOBAL_COUNTERS] = {
    use GlobalCounter::*;
    [
        (UnknownChannel, (&LISTENER, Some(("reason", "unknown_channel")))),
        (Refused408, (&LISTENER, Some(("reason", "timeout")))),
        (Refused413, (&LISTENER, Some(("reason", "too_large")))),
        (Refused503, (&LISTENER, Some(("reason", "overloaded")))),
        (Refused400, (&LISTENER, Some(("reason", "bad_request")))),
        (Closed, (&LISTENER, Some(("reason", "closed")))),
        (RefusedSourceConnections, (&LISTENER, Some(("reason", "source_connections")))),
        (RefusedSourceBytes, (&LISTENER, Some(("reason", "source_bytes")))),
        (RefusedSourceNotAllowed, (&LISTENER, Some(("reason", "source_not_allowed")))),
        (MessagesStored, (&MESSAGES, None)),
        (StatusesStored, (&STATUSES, None)),
        (MediaDownloaded, (&MEDIA, Some(("result", "downloaded")))),
        (MediaSkipped, (&MEDIA, Some(("result", "skipped")))),
        (MediaFailed, (&MEDIA, Some(("result", "failed")))),
        (MediaRetried, (&MEDIA, Some(("result", "retried")))),
        (HandoverTaken, (&HANDOVER, Some(("result", "taken")))),
        (HandoverKept, (&HANDOVER, Some(("result", "kept")))),
        (HandoverLost, (&HANDOVER, Some(("result", "lost")))),
    ]
};

fn histogram_family(h: usize) -> &'static Family {
    match Histogram::ALL[h] {
        Histogram::BatchPosts => &BATCH_POSTS,
        Histogram::CommitSeconds => &COMMIT_SECONDS,
        Histogram::SendSeconds => &SEND_SECONDS,
    }
}

/// One sample: full metric name (with `_bucket`/`_sum`/`_count` for histograms), labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The samples of every family, grouped by family in a fixed order.
fn families(
    snapshot: &Snapshot,
    names: &HashMap<i64, String>,
    workers: &[(String, bool)],
) -> Vec<(&'static Family, Vec<Sample>)> {
    let channel_name = |id: i64| match id {
        0 => "(other channels)".to_string(),
        id => names.get(&id).cloned().unwrap_or_else(|| format!("(channel {id})")),
    };
    let mut out: Vec<(&'static Family, Vec<Sample>)> = Vec::new();
    let mut push = |family: &'static Family, sample: Sample| match out.iter_mut().find(|(f, _)| f.name == family.name) {
        Some((_, samples)) => samples.push(sample),
        None => out.push((family, vec![sample])),
    };
    let full = |f: &Family| format!("{PREFIX}{}", f.name);
    for (c, (family, label)) in CHANNEL_SAMPLES {
        for (id, counters, _) in &snapshot.channels {
            let mut labels = vec![("channel", channel_name(*id))];
            labels.extend(label.map(|(k, v)| (k, v.to_string())));
            push(family, Sample { name: full(family), labels, value: counters[c as usize] as f64 });
        }
    }
    if snapshot.gauges_measured {
        for (gauge, family, scale) in [
            (ChannelGauge::QueueDepth, &QUEUE_DEPTH, 1.0),
            (ChannelGauge::OldestQueuedMs, &QUEUE_AGE, 1e-3),
            (ChannelGauge::IncompleteEvents, &INCOMPLETE_EVENTS, 1.0),
        ] {
            for (id, _, gauges) in &snapshot.channels {
                let value = gauges[gauge as usize] as f64 * scale;
                push(family, Sample { name: full(family), labels: vec![("channel", channel_name(*id))], value });
            }
        }
    }
    for (id, field, events) in &snapshot.unknown_fields {
        let labels = vec![("channel", channel_name(*id)), ("field", field.clone())];
        push(&UNKNOWN_FIELDS, Sample { name: full(&UNKNOWN_FIELDS), labels, value: *events as f64 });
    }
    for (c, (family, label)) in GLOBAL_SAMPLES {
        let labels = label.map(|(k, v)| vec![(k, v.to_string())]).unwrap_or_default();
        push(family, Sample { name: full(family), labels, value: snapshot.global[c as usize] as f64 });
    }
    for h in 0..HISTOGRAMS {
        let family = histogram_family(h);
        let (buckets, count, sum) = &snapshot.histograms[h];
        let bounds = Histogram::ALL[h].bounds();
        for b in 0..BUCKETS {
            let labels = vec![("le", format_value(bounds[b]))];
            push(family, Sample { name: format!("{}_bucket", full(family)), labels, value: buckets[b] as f64 });
        }
        let inf = vec![("le", "+Inf".to_string())];
        push(family, Sample { name: format!("{}_bucket", full(family)), labels: inf, value: *count as f64 });
        push(family, Sample { name: format!("{}_sum", full(family)), labels: vec![], value: *sum });
        push(family, Sample { name: format!("{}_count", full(family)), labels: vec![], value: *count as f64 });
    }
    for (worker, up) in workers {
        let labels = vec![("worker", worker.clone())];
        push(&WORKER_UP, Sample { name: full(&WORKER_UP), labels, value: if *up { 1.0 } else { 0.0 } });
    }
    out
}

/// Every sample, in the order `/metrics` shows them (what `wa_metrics` returns).
pub fn samples(snapshot: &Snapshot, names: &HashMap<i64, String>, workers: &[(String, bool)]) -> Vec<Sample> {
    families(snapshot, names, workers).into_iter().flat_map(|(_, s)| s).collect()
}

/// The Prometheus text exposition format, version 0.0.4.
pub fn render(snapshot: &Snapshot, names: &HashMap<i64, String>, workers: &[(String, bool)]) -> String {
    let mut out = String::new();
    for (family, samples) in families(snapshot, names, workers) {
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {PREFIX}{} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {PREFIX}{} {kind}", family.name);
        for s in samples {
            out.push_str(&s.name);
            if !s.labels.is_empty() {
                let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(out, " {}", format_value(s.value));
        }
    }
    out
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

#[allow(dead_code)]
const _: () = assert!(CHANNEL_GAUGES == 3);

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut counters = [0u64; super::CHANNEL_COUNTERS];
        counters[ChannelCounter::PostStored as usize] = 7;
        counters[ChannelCounter::SendSent as usize] = 3;
        let mut s =
            Snapshot { channels: vec![(5, counters, [2, 1500, 4])], gauges_measured: true, ..Snapshot::default() };
        s.global[GlobalCounter::MessagesStored as usize] = 9;
        s.global[GlobalCounter::RefusedSourceConnections as usize] = 2;
        s.histograms[0] = ([1; BUCKETS], 2, 3.0);
        s
    }

    #[test]
    fn renders_families_once_with_escaped_channel_names() {
        let names = HashMap::from([(5, "sup\"port\\1".to_string())]);
        let text = render(&snapshot(), &names, &[("delivery".into(), true)]);
        assert!(
            text.contains("whatsapp_channel_webhook_posts_total{channel=\"sup\\\"port\\\\1\",outcome=\"stored\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("whatsapp_channel_messages_stored_total 9\n"));
        assert!(text.contains("whatsapp_channel_webhook_refused_total{reason=\"source_connections\"} 2\n"), "{text}");
        assert!(text.contains("whatsapp_channel_sends_total{channel=\"sup\\\"port\\\\1\",result=\"sent\"} 3\n"));
        assert!(text.contains("whatsapp_channel_queue_oldest_age_seconds{channel=\"sup\\\"port\\\\1\"} 1.5\n"));
        assert!(text.contains("whatsapp_channel_webhook_events_incomplete{channel=\"sup\\\"port\\\\1\"} 4\n"));
        assert!(text.contains("whatsapp_channel_listener_batch_posts_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("whatsapp_channel_listener_batch_posts_sum 3\n"));
        assert!(text.contains("whatsapp_channel_worker_up{worker=\"delivery\"} 1\n"));
        assert_eq!(text.matches("# TYPE whatsapp_channel_sends_total counter").count(), 1);
    }

    #[test]
    fn every_counter_has_exactly_one_row() {
        let mut channel: Vec<usize> = CHANNEL_SAMPLES.iter().map(|(c, _)| *c as usize).collect();
        channel.sort_unstable();
        assert_eq!(channel, (0..CHANNEL_COUNTERS).collect::<Vec<_>>());
        let mut global: Vec<usize> = GLOBAL_SAMPLES.iter().map(|(c, _)| *c as usize).collect();
        global.sort_unstable();
        assert_eq!(global, (0..GLOBAL_COUNTERS).collect::<Vec<_>>());
    }

    #[test]
    fn no_queue_gauges_before_they_are_measured() {
        let s = Snapshot { gauges_measured: false, ..snapshot() };
        assert!(!render(&s, &HashMap::new(), &[]).contains("queue_depth"));
    }
}
