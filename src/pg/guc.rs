//! Every setting of the extension, and the one place that reads them: the rest of the code
//! calls the typed accessors at the end of this file (defaults and units live here only).
//! Workers have no session, so settings they read are `SIGHUP` (change with ALTER SYSTEM +
//! pg_reload_conf()) or `POSTMASTER` (need a restart). No secret is ever a setting:
//! credentials live in `wa_channel_secrets`.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::ffi::{CStr, CString};
use std::time::Duration;

/// Address the webhook listener binds to. Loopback by default: Meta only calls https URLs, so
/// either set the TLS files below and listen on a public address, or put a TLS proxy in front.
static LISTEN_ADDRESS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"127.0.0.1:8080"));

/// PEM certificate chain (leaf first, as certbot's fullchain.pem) and private key for https on
/// the listener; unset = plain HTTP. Paths may be relative to the data directory. Reloaded at
/// SIGHUP (a renewed certificate needs no restart); a bad file keeps the previous certificate.
static TLS_CERT_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static TLS_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The public base URL Meta calls (what `wa_webhook_url()` prints); empty means "not set".
static PUBLIC_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Graph API base URL; tests and the simulator point it at a local mock.
static GRAPH_API_URL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://graph.facebook.com"));

/// Graph API version for channels that set none. v18.0 (the seed's) expired in January 2026.
static GRAPH_API_VERSION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"v25.0"));

/// After a crash or a shutdown that interrupted sends, how long the delivery worker waits for
/// Meta's statuses of them (which name the message, see `biz_opaque_callback_data`) before it
/// sends again what heard nothing: a status that arrives in time records the send, and the
/// message is not sent twice. Meta posts `sent` within seconds, and retries a webhook it
/// could not deliver while the server was down.
static RESEND_INTERRUPTED_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(60);

/// How long a channel's sends may get nothing but transport errors and 5xx before its Graph API
/// counts as unreachable: its queue then waits and probes instead of burning attempts (and no
/// message fails for it), so an outage of Meta or of the network loses and reorders nothing.
static OUTAGE_AFTER_MS: GucSetting<i32> = GucSetting::<i32>::new(120_000);

/// While a channel is unreachable, one message probes this often; the first answer resumes it.
static OUTAGE_PROBE_EVERY_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

/// The database whose whatsapp_channel tables the workers serve.
static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));

/// Largest webhook body accepted. Meta sends up to 3 MB; anything larger gets 413. At most the
/// listener's budget for all bodies in flight (64 MB), so that one always fits.
static MAX_BODY_BYTES: GucSetting<i32> = GucSetting::<i32>::new(4 * 1024 * 1024);

/// Most webhook connections open at once; more are answered 503 (Meta retries them). An idle
/// connection costs a few kilobytes; the listener also keeps the cap under what its open-files
/// limit allows (and logs the cap it uses).
static MAX_CONNECTIONS: GucSetting<i32> = GucSetting::<i32>::new(4096);

/// Connections one client address (an IPv6 one by its /64) may hold open at once, per listener
/// worker, counted from accept (before the TLS handshake); more are answered 503. 0 = no cap.
/// So that one client holding slow handshakes or trickled bodies cannot keep Meta at 503.
static MAX_CONNECTIONS_PER_SOURCE: GucSetting<i32> = GucSetting::<i32>::new(64);

/// Bytes of one client address's webhook bodies in flight at once, per listener worker, within
/// the budget of all bodies (64 MB); a body that does not fit is answered 503. 0 = no cap.
static MAX_BODY_BYTES_PER_SOURCE: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024 * 1024);

/// Which client addresses may connect at all: comma-separated networks (`31.13.24.0/21`,
/// `2a03:2880::/32`, a bare address); empty = any. Others are closed without a word. A bad
/// entry at a reload keeps the previous list (and is named in the log); at start it stops the
/// listener, which never falls back to allowing any address.
static ALLOWED_SOURCES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Webhook listener workers sharing `listen_address` (each its own backend with its own group
/// commit); 0 picks one per two CPU cores (see [`listener_workers`]). Needs a restart.
static LISTENER_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Whether listener workers pass POSTs between them (see [`crate::inbound::handover`]): new
/// connections go to the first, which stores small POSTs in its batches and hands large ones
/// to the second. Against connections spread by hash with small POSTs gathered (the earlier
/// rule): 0.86x the CPU a message at 16 connections, 0.69x at 64, and 100-message POSTs at the
/// same rate. Off: the kernel spreads connections by hash and each worker stores what it
/// receives. Needs a restart.
static LISTENER_HANDOVER: GucSetting<bool> = GucSetting::<bool>::new(true);

/// What is kept of inbound media. An enum, so that a typo is refused by `SET`/`ALTER SYSTEM`
/// (and named in the log at reload) instead of silently meaning one of them.
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum MediaDownload {
    /// The bytes, in `wa_media.content`.
    #[name = c"content"]
    Content,
    /// Type, size and hash only.
    #[name = c"metadata"]
    Metadata,
}

static MEDIA_DOWNLOAD: GucSetting<MediaDownload> = GucSetting::<MediaDownload>::new(MediaDownload::Content);

/// Where the maintenance worker serves Prometheus metrics (`GET /metrics`); unset = off.
static METRICS_ADDRESS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Largest media file downloaded; larger ones are recorded as skipped.
static MAX_MEDIA_BYTES: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024 * 1024);

/// Hard timeout of one Graph API call, connect to last byte.
static GRAPH_API_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

/// How long raw webhook POSTs are kept in `wa_webhook_events` (seconds; 0 keeps them forever).
/// They are about a kilobyte a message and only needed to inspect or replay recent traffic:
/// every message and status is in its own table, and deduplication does not read them.
static WEBHOOK_EVENT_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 24 * 3600);

/// How long downloaded media bytes are kept (seconds; 0, the default, keeps them forever): they
/// are the customers' photos and documents, which Meta no longer has after 7 days, so the
/// default deletes nothing; set it to bound the table.
static MEDIA_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Defines every setting. Those that need a restart (PGC_POSTMASTER) exist only when the library
/// is preloaded, as Postgres requires: a session or `pg_upgrade` that loads the library without
/// preloading (to call a SQL function, or to check that it loads) would otherwise end with
/// FATAL "cannot create PGC_POSTMASTER variables after startup". Without preloading no worker
/// runs, and their accessors give the defaults.
pub fn init() {
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        define_restart_settings();
    }
    define_listener_settings();
    define_graph_api_settings();
    define_media_and_retention_settings();
}

/// What the webhook listener serves and accepts, and the URL Meta is given.
fn define_listener_settings() {
    GucRegistry::define_string_guc(
        c"whatsapp_channel.tls_cert_file",
        c"PEM certificate chain for https on the webhook listener; unset = plain HTTP.",
        c"Leaf first (certbot's fullchain.pem). Set with tls_key_file; pg_reload_conf() loads renewed files, and a bad file keeps the previous certificate.",
        &TLS_CERT_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"whatsapp_channel.tls_key_file",
        c"PEM private key for whatsapp_channel.tls_cert_file.",
        c"Readable by the server's owner only (chmod 600), as Postgres requires of ssl_key_file.",
        &TLS_KEY_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"whatsapp_channel.public_url",
        c"Public base URL of the webhook listener, as Meta reaches it (https://...).",
        c"wa_webhook_url(channel) appends /webhook/<channel> to it. Only sessions read it, so a superuser may also SET it.",
        &PUBLIC_URL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.max_body_bytes",
        c"Largest webhook body accepted; larger ones are answered 413.",
        c"Meta's payloads are at most 3 MB.",
        &MAX_BODY_BYTES,
        1024,
        64 * 1024 * 1024,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.max_connections_per_source",
        c"Most webhook connections one client address may hold open at once (per listener worker); more are answered 503. 0 = no cap.",
        c"Counted from accept, before the TLS handshake; IPv6 addresses by their /64. Behind a reverse proxy every client has the proxy's address: raise it or set 0.",
        &MAX_CONNECTIONS_PER_SOURCE,
        0,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.max_body_bytes_per_source",
        c"Bytes of one client address's webhook bodies in flight at once (per listener worker); more are answered 503. 0 = no cap.",
        c"Charged as the bytes arrive, within the 64 MB budget of all bodies. Keep it at least whatsapp_channel.max_body_bytes, or bodies between the two are never accepted.",
        &MAX_BODY_BYTES_PER_SOURCE,
        0,
        1024 * 1024 * 1024,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_string_guc(
        c"whatsapp_channel.allowed_sources",
        c"Client addresses allowed to connect to the webhook listener: comma-separated networks (CIDR, v4 or v6; a bare address is one host); empty = any.",
        c"Others are closed without an answer and counted. A bad entry keeps the previous list at a reload (the log names it). Meta's ranges: whois -h whois.radb.net -- '-i origin AS32934' | grep ^route",
        &ALLOWED_SOURCES,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// How the delivery worker calls the Graph API, and what it does when there is no answer.
fn define_graph_api_settings() {
    GucRegistry::define_string_guc(
        c"whatsapp_channel.graph_api_url",
        c"Base URL of Meta's Graph API.",
        c"Point it at a local mock (wa-sim graph) to run without Meta.",
        &GRAPH_API_URL,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"whatsapp_channel.graph_api_version",
        c"Graph API version used by channels that set none, e.g. v25.0.",
        c"v18.0 expired on 2026-01-26; a channel can override it in wa_channels.graph_api_version.",
        &GRAPH_API_VERSION,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.graph_api_timeout",
        c"Hard timeout of one Graph API request.",
        c"A request that takes longer is retried later.",
        &GRAPH_API_TIMEOUT_MS,
        100,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.outage_after",
        c"How long only transport errors and 5xx make a channel's Graph API count as unreachable.",
        c"Its queue then waits and probes (whatsapp_channel.outage_probe_every); no message fails for an outage.",
        &OUTAGE_AFTER_MS,
        0,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.outage_probe_every",
        c"How often one message probes an unreachable channel's Graph API.",
        c"The first answer resumes the channel's queue, in order.",
        &OUTAGE_PROBE_EVERY_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.resend_interrupted_after",
        c"After a crash, how long interrupted sends wait for Meta's status before they are sent again.",
        c"A status that arrives in time records the send, so the message is not sent twice; 0 sends again at once.",
        &RESEND_INTERRUPTED_AFTER_S,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

/// What is kept of inbound media, and how long raw webhooks and media bytes are kept.
fn define_media_and_retention_settings() {
    GucRegistry::define_enum_guc(
        c"whatsapp_channel.media_download",
        c"What is kept of inbound media: 'content' (the bytes) or 'metadata' (type, size, hash).",
        c"Downloads run in the delivery worker, never on the webhook's path.",
        &MEDIA_DOWNLOAD,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.max_media_bytes",
        c"Largest inbound media file downloaded; larger ones are skipped (metadata only).",
        c"Meta allows inbound files up to 100 MB.",
        &MAX_MEDIA_BYTES,
        0,
        100 * 1024 * 1024, // Meta's own limit; a bytea value could not exceed 1 GB anyway
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.webhook_event_retention",
        c"How long raw webhook POSTs are kept in wa_webhook_events; 0 keeps them forever.",
        c"The maintenance worker deletes older ones in small batches. Messages and statuses stay, and redeliveries are still recognised.",
        &WEBHOOK_EVENT_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.media_retention",
        c"How long downloaded media bytes are kept in wa_media; 0 (the default) keeps them forever.",
        c"Older contents are set to NULL (purged_at says when); the job and its metadata stay. Meta keeps media for 7 days only.",
        &MEDIA_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

/// The settings that need a restart: where and what the workers serve.
fn define_restart_settings() {
    GucRegistry::define_string_guc(
        c"whatsapp_channel.listen_address",
        c"host:port the webhook listener binds to.",
        c"Loopback by default; Meta needs a public https URL in front of it (see whatsapp_channel.public_url). Needs a restart.",
        &LISTEN_ADDRESS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"whatsapp_channel.database",
        c"Database in which the whatsapp_channel workers run.",
        c"CREATE EXTENSION whatsapp_channel in this database. Needs a restart.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.max_connections",
        c"Most webhook connections open at once; more are answered 503.",
        c"Idle connections are cheap; a request head must arrive within 10 s, its body within 10 s more (else 408). Kept under the open-files limit. Needs a restart.",
        &MAX_CONNECTIONS,
        1,
        1_000_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"whatsapp_channel.listener_workers",
        c"Webhook listener workers sharing listen_address; 0 = one per two CPU cores, at least two on 2 or more.",
        c"Each is a backend with its own group commit, sharing the address (SO_REUSEPORT); see listener_handover for which gets the connections. Needs a restart.",
        &LISTENER_WORKERS,
        0,
        crate::pg::commit_wake::MAX_LISTENERS as i32,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"whatsapp_channel.listener_handover",
        c"Listener workers pass webhook POSTs between them: new connections go to the first, which hands large POSTs to the second.",
        c"Light load is stored in one worker's batches (fewer, larger transactions), a backlog's large POSTs by two at once. Off: the kernel spreads connections by hash and each worker stores what it receives. Needs a restart.",
        &LISTENER_HANDOVER,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"whatsapp_channel.metrics_address",
        c"Where Prometheus metrics are served (GET /metrics), e.g. 127.0.0.1:9187; unset = off.",
        c"Served by the maintenance worker from counters in shared memory; the same figures are in the wa_metrics view. Needs a restart.",
        &METRICS_ADDRESS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

/// How many webhook listener workers run: the setting, or for 0 one per two CPU cores (a
/// worker's backend needs about a core at full load, and the HTTP threads and Postgres'
/// own processes the rest) but two on a machine of 2 or 3 cores, and at most
/// [`crate::pg::commit_wake::MAX_LISTENERS`].
pub fn listener_workers() -> usize {
    let setting = usize::try_from(LISTENER_WORKERS.get()).unwrap_or(0);
    let cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = if setting == 0 { auto_listener_workers(cores()) } else { setting };
    n.clamp(1, crate::pg::commit_wake::MAX_LISTENERS)
}

/// Whether listener workers pass POSTs between them (with more than one worker).
pub fn listener_handover() -> bool {
    LISTENER_HANDOVER.get()
}

/// The workers for `listener_workers = 0` on a machine of `cores` cores. Why two on 2 cores
/// rather than one: a backend stores one batch at a time, and large batches (what Meta sends
/// when it redelivers a backlog after an outage) are bound by that one backend while the
/// other core idles: 100-message POSTs are stored 1.6 times as fast by two (13,800 against
/// 8,500 msg/s on 4.3 million messages), while one message per POST is the same within the
/// noise (0.94 at 16 connections, 1.01 at 64: BENCHMARKS.md, "2 December 2026, night"). A second
/// worker also keeps taking webhooks while the other restarts. One core gets one.
fn auto_listener_workers(cores: usize) -> usize {
    if cores < 2 { 1 } else { (cores / 2).max(2) }
}

/// Where `/metrics` is served, if anywhere.
pub fn metrics_address() -> Option<String> {
    Some(string(&METRICS_ADDRESS, "")).filter(|a| !a.is_empty())
}

pub fn listen_address() -> String {
    string(&LISTEN_ADDRESS, "127.0.0.1:8080")
}

/// The TLS certificate and key files; both empty means plain HTTP.
pub fn tls_files() -> (String, String) {
    (string(&TLS_CERT_FILE, ""), string(&TLS_KEY_FILE, ""))
}

pub fn database() -> String {
    string(&DATABASE, "postgres")
}

pub fn graph_api_url() -> String {
    string(&GRAPH_API_URL, "https://graph.facebook.com")
}

pub fn graph_api_version() -> String {
    string(&GRAPH_API_VERSION, "v25.0")
}

/// How long only transport errors and 5xx make a channel count as unreachable.
pub fn outage_after() -> Duration {
    Duration::from_millis(u64::try_from(OUTAGE_AFTER_MS.get()).unwrap_or(120_000))
}

/// How often one message probes an unreachable channel.
pub fn outage_probe_every() -> Duration {
    Duration::from_millis(u64::try_from(OUTAGE_PROBE_EVERY_MS.get()).unwrap_or(30_000).max(10))
}

/// How long sends interrupted by a crash wait for their status before they are sent again.
pub fn resend_interrupted_after() -> Duration {
    Duration::from_secs(u64::try_from(RESEND_INTERRUPTED_AFTER_S.get()).unwrap_or(60))
}

/// Hard timeout of one Graph API call (at least 100 ms, so that a typo cannot make every call fail).
pub fn graph_api_timeout() -> Duration {
    Duration::from_millis(u64::try_from(GRAPH_API_TIMEOUT_MS.get()).unwrap_or(30_000).max(100))
}

pub fn max_body_bytes() -> usize {
    usize::try_from(MAX_BODY_BYTES.get()).unwrap_or(4 << 20)
}

/// Connections per client address (per listener worker); 0 = no cap.
pub fn max_connections_per_source() -> usize {
    usize::try_from(MAX_CONNECTIONS_PER_SOURCE.get()).unwrap_or(64)
}

/// Body bytes in flight per client address (per listener worker); 0 = no cap.
pub fn max_body_bytes_per_source() -> usize {
    usize::try_from(MAX_BODY_BYTES_PER_SOURCE.get()).unwrap_or(16 << 20)
}

/// The allow-list of client addresses as set (empty: any).
pub fn allowed_sources() -> String {
    string(&ALLOWED_SOURCES, "")
}

pub fn max_connections() -> u64 {
    u64::try_from(MAX_CONNECTIONS.get()).unwrap_or(1)
}

pub fn media_download() -> MediaDownload {
    MEDIA_DOWNLOAD.get()
}

pub fn max_media_bytes() -> u64 {
    u64::try_from(MAX_MEDIA_BYTES.get()).unwrap_or(0)
}

/// Seconds raw webhook POSTs are kept; 0 keeps them forever.
pub fn webhook_event_retention_s() -> i32 {
    WEBHOOK_EVENT_RETENTION_S.get()
}

/// Seconds downloaded media bytes are kept; 0 keeps them forever.
pub fn media_retention_s() -> i32 {
    MEDIA_RETENTION_S.get()
}

/// The value of a string setting, or `default` when it is unset or empty.
fn string(setting: &GucSetting<Option<CString>>, default: &str) -> String {
    setting
        .get()
        .as_deref()
        .map(CStr::to_string_lossy)
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| default.to_string())
}
