//! Graph API calls made from a user's session (not from a worker): reading templates and
//! uploading media. They run inside the caller's transaction, with the configured timeout.

use crate::pg::error::raise;
use pgrx::PgSqlErrorCode;

/// A channel's Graph API coordinates, once the caller's `send` privilege on it is checked, or an
/// ERROR: no privilege (42501), or an unknown channel.
pub fn channel_api(channel: &str) -> crate::channels::ChannelApi {
    crate::channels::access::require_channel(channel, crate::channels::access::Needed::Send);
    crate::channels::store::channel_api(channel).unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("unknown channel '{channel}'"),
            "Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.",
        )
    })
}

/// An agent for Graph API calls made from a session, with the configured timeout.
pub fn session_agent() -> ureq::Agent {
    let timeout = crate::pg::guc::graph_api_timeout();
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into()
}

pub fn base_and_version(api: &crate::channels::ChannelApi) -> (String, String) {
    let base = crate::pg::guc::graph_api_url();
    let version = api.graph_api_version.clone().unwrap_or_else(crate::pg::guc::graph_api_version);
    (base, version)
}

pub fn unreachable_graph_api(e: impl std::fmt::Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
        format!("could not reach the Graph API: {e}"),
        "Check whatsapp_channel.graph_api_url and the network.",
    )
}
