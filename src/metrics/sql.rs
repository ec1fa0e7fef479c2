//! `wa_metrics`: the samples `/metrics` shows, as rows, for sql_exporter and for a look from
//! psql. Read from the same shared memory in the calling backend.

use super::{counters, server};
use crate::inbound::store::unknown_fields;
use pgrx::prelude::*;
use std::collections::HashMap;

/// Every sample of `/metrics`: its name, its labels as jsonb and its value. Runs as the
/// extension owner, so a monitoring role needs no right on `wa_channels` (it reads names only);
/// a channel's samples are there only for a role that may read the channel (and the shared
/// overflow slot's only for an admin), as row-level security would have it.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn _wa_metrics() -> TableIterator<'static, (name!(metric, String), name!(labels, pgrx::JsonB), name!(value, f64))> {
    let names: HashMap<i64, String> = crate::channels::store::channel_names().into_iter().collect();
    let workers = server::workers(crate::pg::guc::listener_workers());
    let visible = crate::channels::access::visible_channels();
    let mut snapshot = counters::snapshot();
    snapshot.channels.retain(|(id, _, _)| visible.may_read(*id));
    snapshot.unknown_fields = unknown_fields().into_iter().filter(|(id, _, _)| visible.may_read(*id)).collect();
    let samples = channel_metrics::exposition::samples(&snapshot, &names, &workers);
    TableIterator::new(samples.into_iter().map(|s| {
        let labels: serde_json::Map<String, serde_json::Value> =
            s.labels.into_iter().map(|(k, v)| (k.to_string(), v.into())).collect();
        (s.name, pgrx::JsonB(serde_json::Value::Object(labels)), s.value)
    }))
}
