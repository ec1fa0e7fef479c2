//! What the benchmark measured (per part) and the markdown table and lines it prints, with the
//! statistics they are computed by.

use std::fmt;
use std::time::{Duration, Instant};

/// One part's measurements.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    /// Messages committed.
    pub queued: usize,
    /// Of those, requests that arrived at the simulator before the deadline.
    pub received: usize,
    /// Received messages per second: `received` / (last arrival - first COMMIT returned).
    pub delivered_per_s: f64,
    /// Messages per second between the arrivals of the 10th and the 90th percentile message.
    pub sustained_per_s: f64,
    /// COMMIT returned -> request arrival, in ms, sorted (negative: arrived before COMMIT returned).
    pub latency_ms: Vec<f64>,
    /// How long the COMMITs (or autocommitted calls) took, in ms, sorted.
    pub commit_ms: Vec<f64>,
    /// Messages per second the client actually committed (latency part: the pacing achieved).
    pub committed_per_s: f64,
    /// `status: count` of the part's rows once the worker had recorded the answers.
    pub statuses: String,
    /// Requests arrived in each whole second after the (first) COMMIT returned.
    pub per_second: Vec<usize>,
    /// CPU the delivery worker used during the part, in seconds: its main thread, and all its
    /// threads; `None` when its process cannot be read here (the database is not local).
    pub worker_cpu: Option<(f64, f64)>,
    /// How long the part ran: from its first COMMIT to its last arrival.
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct OutboundReport {
    pub latency: Duration,
    pub sim_url: String,
    pub probes: usize,
    pub parts: Vec<Part>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// 12345.6 -> "12,346"
pub(super) fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < -0.5 { format!("-{out}") } else { out }
}

fn ms(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x.abs() >= 100.0 {
        thousands(x)
    } else {
        format!("{x:.1}")
    }
}

impl fmt::Display for OutboundReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| part | committed | arrived at the mock | delivered/s (all) | sustained/s (middle 80%) | COMMIT→request p50 / p99 / max (ms) |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|")?;
        for p in &self.parts {
            let l = &p.latency_ms;
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} / {} / {} |",
                p.name,
                thousands(p.queued as f64),
                thousands(p.received as f64),
                thousands(p.delivered_per_s),
                thousands(p.sustained_per_s),
                ms(percentile(l, 50.0)),
                ms(percentile(l, 99.0)),
                ms(l.last().copied().unwrap_or(f64::NAN)),
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "mock Graph API {} answering after {} ms; {} probe(s) until the worker used it",
            self.sim_url,
            self.latency.as_millis(),
            self.probes
        )?;
        for p in &self.parts {
            let negative = p.latency_ms.iter().filter(|x| **x < 0.0).count();
            writeln!(
                f,
                "{}: committed at {:.0}/s; COMMIT took p50 {} ms, max {} ms; {} request(s) arrived before COMMIT returned; final statuses: {}",
                p.name,
                p.committed_per_s,
                ms(percentile(&p.commit_ms, 50.0)),
                ms(p.commit_ms.last().copied().unwrap_or(f64::NAN)),
                negative,
                p.statuses
            )?;
            if let Some((main, all)) = p.worker_cpu {
                let secs = p.elapsed.as_secs_f64().max(1e-9);
                writeln!(
                    f,
                    "{}: delivery worker CPU over {:.1} s: main thread {:.1} s ({:.0}% of a core), all threads {:.1} s ({:.0}%)",
                    p.name,
                    secs,
                    main,
                    main / secs * 100.0,
                    all,
                    all / secs * 100.0
                )?;
            }
            let seconds: Vec<String> = p.per_second.iter().map(usize::to_string).collect();
            writeln!(f, "{}: requests per second after COMMIT: {}", p.name, seconds.join(" "))?;
        }
        Ok(())
    }
}

/// Requests per whole second after `from`.
pub(super) fn per_second(from: Instant, arrivals: &[Instant]) -> Vec<usize> {
    let mut buckets = Vec::new();
    for a in arrivals {
        let i = a.saturating_duration_since(from).as_secs() as usize;
        if buckets.len() <= i {
            buckets.resize(i + 1, 0);
        }
        buckets[i] += 1;
    }
    buckets
}

pub(super) fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from { (to - from).as_secs_f64() * 1e3 } else { -((from - to).as_secs_f64() * 1e3) }
}

/// Requests per second from `from` to the last arrival, and over the middle 80% of arrivals
/// (NaN with fewer than 10). `arrivals` is in order.
pub(super) fn rates(arrivals: &[Instant], from: Instant) -> (f64, f64) {
    let received = arrivals.len();
    let delivered = match arrivals.last() {
        Some(last) => received as f64 / last.saturating_duration_since(from).as_secs_f64().max(1e-9),
        None => 0.0,
    };
    let sustained = if received >= 10 {
        let (a, b) = (received / 10, received * 9 / 10 - 1);
        (b - a) as f64 / (arrivals[b] - arrivals[a]).as_secs_f64().max(1e-9)
    } else {
        f64::NAN
    };
    (delivered, sustained)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_formatting() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(2.04), "2.0");
        assert_eq!(ms(15010.2), "15,010");
        let t = Instant::now();
        let at = [t, t + Duration::from_millis(500), t + Duration::from_millis(2100)];
        assert_eq!(per_second(t, &at), vec![2, 0, 1]);
    }
}
