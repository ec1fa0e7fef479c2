//! The media slice's SQL: download jobs (`wa_media`, sql/media.sql) as the delivery worker
//! claims and finishes them, and the retention of their bytes.

use crate::channels::Secret;
use crate::pg::extension::use_extension_schema;
use crate::pg::spi::{get_one_prepared, ok, rows_prepared};
use crate::{sql_enum, sql_row};
use pgrx::prelude::*;

sql_row! {
    /// A media download claimed by the delivery worker (status `downloading`).
    #[derive(Clone, Debug)]
    pub struct MediaJob {
        pub message_id: i64,
        pub media_id: String,
        pub expected_sha256: Option<String>,
        pub attempts: i32,
        pub phone_number_id: String,
        pub graph_api_version: String,
        pub access_token: Secret,
        /// Seconds since the message came (its media id lives 7 days at Meta).
        pub waited_seconds: f64,
    }
}

sql_enum! {
    /// Where a download job ends up: the `status` column of `wa_media` (see sql/schema.sql), as
    /// the worker sets it (`downloading` is set by the claim): back in the queue for another
    /// attempt (`pending`), downloaded, not kept (too large, or only metadata is wanted), failed.
    pub enum MediaStatus ("media status") {
        Pending = "pending", Done = "done", Skipped = "skipped", Failed = "failed",
    }
}

/// How a download job ends (see [`finish_media`]).
#[derive(Default)]
pub struct Finish<'a> {
    pub mime_type: Option<&'a str>,
    pub sha256: Option<&'a str>,
    pub size: Option<u64>,
    pub content: Option<&'a [u8]>,
    pub error: Option<&'a str>,
    /// For [`MediaStatus::Pending`]: seconds until the next attempt.
    pub retry_in: Option<f64>,
}

pub fn claim_media(max_jobs: i32, default_version: &str) -> Vec<MediaJob> {
    rows_prepared(
        "SELECT * FROM _wa_claim_media($1, $2)",
        &[max_jobs.into(), default_version.into()],
        MediaJob::from_row,
    )
}

/// Seconds until the next media download is due, if one waits (see _wa_next_media_due_in).
pub fn next_due_in() -> Option<f64> {
    get_one_prepared("SELECT _wa_next_media_due_in()", &[])
}

/// Ends a download job with `status` (see _wa_finish_media).
pub fn finish_media(message_id: i64, status: MediaStatus, finish: Finish) {
    let size = finish.size.and_then(|s| i64::try_from(s).ok());
    ok(Spi::run_with_args(
        "SELECT _wa_finish_media($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            message_id.into(),
            status.as_sql().into(),
            finish.mime_type.into(),
            finish.sha256.into(),
            size.into(),
            finish.content.into(),
            finish.error.into(),
            finish.retry_in.into(),
        ],
    ));
}

/// A download Meta could not be reached for: due again after `wait`, its attempt given back,
/// with the channel's other waiting downloads (see _wa_media_waits).
pub fn media_waits_out_outage(message_id: i64, error: &str, wait: std::time::Duration) {
    ok(Spi::run_with_args(
        "SELECT _wa_media_waits($1, $2, $3)",
        &[message_id.into(), error.into(), wait.as_secs_f64().into()],
    ));
}

/// A download whose access token (`refused`) Meta refused: its channel paused and its downloads
/// waiting `wait` while the channel still has that token, its attempt given back (see
/// _wa_media_waits_for_token). The token goes as its SHA-256, never as a parameter itself.
pub fn media_waits_for_token(message_id: i64, refused: &Secret, reason: &str, wait: std::time::Duration) {
    let refused_sha256 = whatsapp_cloud::graph_api::sha256_hex(refused.expose().as_bytes());
    ok(Spi::run_with_args(
        "SELECT _wa_media_waits_for_token($1, $2, $3, $4)",
        &[message_id.into(), refused_sha256.into(), reason.into(), wait.as_secs_f64().into()],
    ));
}

/// Downloads that a restart interrupted go back to the queue (see _wa_requeue_media).
pub fn requeue_interrupted() {
    ok(Spi::run("SELECT _wa_requeue_media()"));
}

/// Drops the bytes of up to `limit` media files downloaded more than `retention_s` ago (the
/// job and its metadata stay, with `purged_at`); `None` if the extension is not installed.
pub fn purge_media_contents(retention_s: i32, limit: i64) -> Option<i64> {
    if !use_extension_schema() {
        return None;
    }
    ok(Spi::get_one_with_args(
        "WITH gone AS (
             UPDATE wa_media SET content = NULL, purged_at = pg_catalog.now() WHERE message_id IN (
                 SELECT message_id FROM wa_media
                  WHERE content IS NOT NULL AND updated_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)
                  ORDER BY updated_at LIMIT $2)
             RETURNING 1)
         SELECT pg_catalog.count(*) FROM gone",
        &[retention_s.into(), limit.into()],
    ))
}
