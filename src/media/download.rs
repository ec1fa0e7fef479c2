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
use whatsapp_cloud::graph_api::{self, MEDIA_TOKEN_WAIT, MediaFailure, MediaNextStep};

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
    /// Not fetched this time: why, which says what follows (see [`graph_api::media_next_step`]).
    NotFetched(MediaFailure),
}

impl From<MediaFailure> for DownloadResult {
    fn from(failure: MediaFailure) -> DownloadResult {
        DownloadResult::NotFetched(failure)
    }
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

/// Why a GET brought back no answer to read.
enum GetError {
    /// The answer is longer than the limit asked for.
    TooLarge,
    /// No answer, or one cut short: Meta is out of reach.
    Transport(String),
}

fn get(
    agent: &Agent,
    url: &str,
    access_token: &str,
    timeout: Duration,
    limit: u64,
) -> Result<(u16, Vec<u8>), GetError> {
    let mut r = agent
        .get(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("Authorization", format!("Bearer {access_token}"))
        .call()
        .map_err(|e| GetError::Transport(e.to_string()))?;
    let status = r.status().as_u16();
    let body = r.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| match e {
        ureq::Error::BodyExceedsLimit(_) => GetError::TooLarge,
        e => GetError::Transport(format!("reading the answer: {e}")),
    })?;
    Ok((status, body))
}

/// Asks for a fresh URL (they live 5 minutes), then fetches the bytes with the token.
pub fn download(agent: &Agent, d: &Download, timeout: Duration) -> DownloadResult {
    let info = match get(agent, &d.info_url, d.access_token.expose(), timeout, 1 << 20) {
        Err(GetError::Transport(e)) => return MediaFailure::Unreachable(e).into(),
        Err(GetError::TooLarge) => {
            return MediaFailure::Retry("the media lookup answered more than 1 MB".to_string()).into();
        }
        Ok((status, body)) => match graph_api::parse_media_info(status, &body) {
            Ok(info) => info,
            Err(e) => return graph_api::media_lookup_failure(&e, &d.media_id).into(),
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
    let bytes = match get(agent, &info.url, d.access_token.expose(), timeout, d.max_bytes) {
        Err(GetError::Transport(e)) => return MediaFailure::Unreachable(e).into(),
        // (Meta said a smaller size, or none.)
        Err(GetError::TooLarge) => {
            let why = format!("larger than whatsapp_channel.max_media_bytes ({} bytes)", d.max_bytes);
            return DownloadResult::Skipped { mime_type: info.mime_type, size: info.file_size, why };
        }
        Ok((200, bytes)) => bytes,
        Ok((status, _)) => return graph_api::media_download_failure(status).into(),
    };
    let expected = d.expected_sha256.as_deref().or(info.sha256.as_deref());
    if let Some(expected) = expected.filter(|e| !graph_api::sha256_matches(&bytes, e)) {
        return MediaFailure::Permanent(format!(
            "the file's sha256 ({}) does not match the webhook's ({expected}): it was altered or cut short",
            graph_api::sha256_hex(&bytes)
        ))
        .into();
    }
    DownloadResult::Done {
        mime_type: info.mime_type,
        sha256: graph_api::sha256_hex(&bytes),
        size: bytes.len() as u64,
        content: Some(bytes),
    }
}

/// Records one download's result; returns what it counts for the metrics.
pub fn record_download(job: &MediaJob, result: &DownloadResult) -> GlobalCounter {
    let failure = match result {
        DownloadResult::Done { mime_type, sha256, content, size } => {
            let finish = Finish {
                mime_type: mime_type.as_deref(),
                sha256: Some(sha256),
                size: Some(*size),
                content: content.as_deref(),
                ..Finish::default()
            };
            store::finish_media(job.message_id, MediaStatus::Done, finish);
            return GlobalCounter::MediaDownloaded;
        }
        DownloadResult::Skipped { mime_type, size, why } => {
            let finish = Finish { mime_type: mime_type.as_deref(), size: *size, error: Some(why), ..Finish::default() };
            store::finish_media(job.message_id, MediaStatus::Skipped, finish);
            return GlobalCounter::MediaSkipped;
        }
        DownloadResult::NotFetched(failure) => failure,
    };
    let why = failure.why();
    let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
    let waited = Duration::from_secs_f64(job.waited_seconds.max(0.0));
    match graph_api::media_next_step(failure, attempts, waited, graph_api::jitter(job.message_id, attempts)) {
        MediaNextStep::RetryIn(delay) => {
            let finish = Finish { error: Some(why), retry_in: Some(delay.as_secs_f64()), ..Finish::default() };
            store::finish_media(job.message_id, MediaStatus::Pending, finish);
            GlobalCounter::MediaRetried
        }
        MediaNextStep::WaitOutOutage(wait) => {
            store::media_waits_out_outage(job.message_id, why, wait);
            GlobalCounter::MediaRetried
        }
        MediaNextStep::WaitForToken => {
            let hint = graph_api::hint(Some(190)).unwrap_or_default();
            warning!(
                "whatsapp_channel: the Graph API refused the access token for the media of message {} ({why}); unless the token was replaced meanwhile, the channel is paused and its downloads wait for wa_set_access_token(). {hint}",
                job.message_id
            );
            store::media_waits_for_token(
                job.message_id,
                &job.access_token,
                &format!("{why}: {hint}"),
                MEDIA_TOKEN_WAIT,
            );
            GlobalCounter::MediaRetried
        }
        MediaNextStep::GiveUp(why) => {
            warning!("whatsapp_channel: the media of message {} was not downloaded: {why}", job.message_id);
            store::finish_media(job.message_id, MediaStatus::Failed, Finish { error: Some(&why), ..Finish::default() });
            GlobalCounter::MediaFailed
        }
    }
}
