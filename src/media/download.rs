//! Downloading inbound media: a job per media message (`wa_media`), claimed by the delivery
//! worker, which shares its sender threads with sends. [`download`] runs on a sender thread (no
//! Postgres calls): a fresh short-lived URL from the Graph API, then the bytes, checked
//! against the webhook's sha256. [`record_download`] records the result on the main thread.

use super::store::{self, Finish, MediaJob, MediaStatus};
use crate::channels::Secret;
use crate::metrics::GlobalCounter;
use crate::warning;
use std::time::Duration;
use ureq::Agent;
use whatsapp_cloud::graph_api::{self, Retry};

/// One media file to fetch: its description (for a fresh short-lived URL), then its bytes.
pub struct Download {
    pub message_id: i64,
    pub media_id: String,
    pub info_url: String,
    pub access_token: Secret,
    pub expected_sha256: Option<String>,
    pub max_bytes: u64,
    pub keep_content: bool,
}

/// How a download ended.
pub enum DownloadResult {
    Done {
        mime_type: Option<String>,
        sha256: String,
        content: Option<Vec<u8>>,
        size: u64,
    },
    /// Not kept: too large, or only metadata is wanted.
    Skipped {
        mime_type: Option<String>,
        size: Option<u64>,
        why: String,
    },
    /// Retrying cannot help (the media id is gone, the bytes do not match).
    Failed(String),
    /// Worth another try later (5xx, timeouts, an expired URL).
    Retry(String),
}

impl Download {
    /// The download of a claimed job, with the settings of this turn.
    pub fn of(job: &MediaJob, base_url: &str, max_bytes: u64, keep_content: bool) -> Download {
        Download {
            message_id: job.message_id,
            media_id: job.media_id.clone(),
            info_url: graph_api::media_info_url(base_url, &job.graph_api_version, &job.media_id, &job.phone_number_id),
            access_token: job.access_token.clone(),
            expected_sha256: job.expected_sha256.clone(),
            max_bytes,
            keep_content,
        }
    }
}

fn get(agent: &Agent, url: &str, access_token: &str, timeout: Duration, limit: u64) -> Result<(u16, Vec<u8>), String> {
    let mut r = agent
        .get(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("Authorization", format!("Bearer {access_token}"))
        .call()
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| format!("reading the answer: {e}"))?;
    Ok((status, body))
}

/// Asks for a fresh URL (they live 5 minutes), then fetches the bytes with the token.
pub fn download(agent: &Agent, d: &Download, timeout: Duration) -> DownloadResult {
    let info = match get(agent, &d.info_url, d.access_token.expose(), timeout, 1 << 20) {
        Err(e) => return DownloadResult::Retry(e),
        Ok((status, body)) => match graph_api::parse_media_info(status, &body) {
            Ok(info) => info,
            Err(e) if e.code == Some(100) || status == 404 => {
                return DownloadResult::Failed(format!(
                    "media id {} no longer exists at Meta (ids from webhooks live 7 days): {}",
                    d.media_id, e.message
                ));
            }
            Err(e) => return DownloadResult::Retry(e.message),
        },
    };
    if info.file_size.is_some_and(|n| n > d.max_bytes) {
        let why = format!("larger than whatsapp_channel.max_media_bytes ({} bytes)", d.max_bytes);
        return DownloadResult::Skipped { mime_type: info.mime_type, size: info.file_size, why };
    }
    if !d.keep_content {
        let why = "only metadata is kept (whatsapp_channel.media_download = 'metadata')".to_string();
        return DownloadResult::Skipped { mime_type: info.mime_type, size: info.file_size, why };
    }
    let bytes = match get(agent, &info.url, d.access_token.expose(), timeout, d.max_bytes + 1) {
        Err(e) => return DownloadResult::Retry(e),
        Ok((200, bytes)) => bytes,
        // An expired URL answers 404: the next attempt asks for a new one.
        Ok((status, _)) => return DownloadResult::Retry(format!("the download URL answered {status}")),
    };
    if bytes.len() as u64 > d.max_bytes {
        let why = format!("larger than whatsapp_channel.max_media_bytes ({} bytes)", d.max_bytes);
        return DownloadResult::Skipped { mime_type: info.mime_type, size: Some(bytes.len() as u64), why };
    }
    let expected = d.expected_sha256.as_deref().or(info.sha256.as_deref());
    if let Some(expected) = expected.filter(|e| !graph_api::sha256_matches(&bytes, e)) {
        return DownloadResult::Failed(format!(
            "the file's sha256 ({}) does not match the webhook's ({expected}): it was altered or cut short",
            graph_api::sha256_hex(&bytes)
        ));
    }
    DownloadResult::Done {
        mime_type: info.mime_type,
        sha256: graph_api::sha256_hex(&bytes),
        size: bytes.len() as u64,
        content: Some(bytes),
    }
}

/// Attempts at a media download before it is given up (about 10 minutes of backoff).
const MAX_MEDIA_ATTEMPTS: u32 = 10;

/// Records one download's result; returns what it counts for the metrics.
pub fn record_download(job: &MediaJob, result: &DownloadResult) -> GlobalCounter {
    let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
    match result {
        DownloadResult::Done { mime_type, sha256, content, size } => {
            let finish = Finish {
                mime_type: mime_type.as_deref(),
                sha256: Some(sha256),
                size: Some(*size),
                content: content.as_deref(),
                ..Finish::default()
            };
            store::finish_media(job.message_id, MediaStatus::Done, finish);
            GlobalCounter::MediaDownloaded
        }
        DownloadResult::Skipped { mime_type, size, why } => {
            let finish = Finish { mime_type: mime_type.as_deref(), size: *size, error: Some(why), ..Finish::default() };
            store::finish_media(job.message_id, MediaStatus::Skipped, finish);
            GlobalCounter::MediaSkipped
        }
        DownloadResult::Retry(why) if attempts < MAX_MEDIA_ATTEMPTS => {
            let delay = graph_api::backoff(Retry::Backoff, attempts, graph_api::jitter(job.message_id, attempts));
            let finish = Finish { error: Some(why), retry_in: Some(delay.as_secs_f64()), ..Finish::default() };
            store::finish_media(job.message_id, MediaStatus::Pending, finish);
            GlobalCounter::MediaRetried
        }
        DownloadResult::Retry(why) | DownloadResult::Failed(why) => {
            let why = if matches!(result, DownloadResult::Retry(_)) {
                format!("gave up after {attempts} attempts: {why}")
            } else {
                why.clone()
            };
            warning!("whatsapp_channel: the media of message {} was not downloaded: {why}", job.message_id);
            store::finish_media(job.message_id, MediaStatus::Failed, Finish { error: Some(&why), ..Finish::default() });
            GlobalCounter::MediaFailed
        }
    }
}
