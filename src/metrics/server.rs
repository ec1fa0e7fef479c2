//! The `/metrics` endpoint, on threads of the maintenance worker that make no Postgres call:
//! they read the counters from shared memory and the channel names the worker's main thread
//! last read (it refreshes them, and measures the queues, every few seconds).

use super::counters;
use crate::pg::commit_wake;
use bounded_http::{Limits, Request, Response, Tls};
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the main thread reads from Postgres for the HTTP threads, which make no Postgres call.
#[derive(Default)]
pub struct FromTables {
    /// Channel names by id.
    pub names: HashMap<i64, String>,
    /// Per channel and webhook field not understood: how many changes came.
    pub unknown_fields: Vec<(i64, String, u64)>,
}

/// What the main thread hands the HTTP threads (see [`FromTables`]).
pub type ChannelNames = Arc<RwLock<FromTables>>;

struct MetricsHandler {
    names: ChannelNames,
    listener_workers: usize,
}

impl bounded_http::Handler for MetricsHandler {
    fn handle(&self, request: Request) -> Response {
        if request.path() != "/metrics" {
            return Response::text(404, "Not found: metrics are at /metrics");
        }
        if request.method != "GET" && request.method != "HEAD" {
            return Response::text(405, "Method not allowed: GET /metrics");
        }
        let (names, unknown_fields) = {
            let read = self.names.read().unwrap_or_else(|p| p.into_inner());
            (read.names.clone(), read.unknown_fields.clone())
        };
        let mut snapshot = counters::snapshot();
        snapshot.unknown_fields = unknown_fields;
        let text = channel_metrics::exposition::render(&snapshot, &names, &workers(self.listener_workers));
        Response::bytes(200, "text/plain; version=0.0.4; charset=utf-8", text.into_bytes())
    }
}

/// Which workers run, as `worker_up` reports them.
pub fn workers(listener_workers: usize) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = (0..listener_workers)
        .map(|slot| (format!("webhook listener {}", slot + 1), commit_wake::listener_running(slot)))
        .collect();
    out.push(("delivery".to_string(), commit_wake::delivery_running()));
    out.push(("maintenance".to_string(), commit_wake::maintenance_running()));
    out
}

/// Binds `address` and serves `/metrics` until the process ends.
pub fn start(address: &str, listener_workers: usize) -> Result<ChannelNames, String> {
    let listener = TcpListener::bind(address).map_err(|e| format!("cannot bind {address}: {e}"))?;
    let names = ChannelNames::default();
    let limits = Limits {
        max_connections: 64,
        head_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        handler_threads: 4,
        io_threads: 1,
        ..Limits::default()
    };
    let handler = MetricsHandler { names: names.clone(), listener_workers };
    bounded_http::serve(listener, limits, Tls::plain(), Arc::new(handler)).map_err(|e| e.to_string())?;
    Ok(names)
}
