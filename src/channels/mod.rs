//! Channels: a WhatsApp number with its credentials, as `wa_add_channel()` adds it. What the
//! workers and sessions read of a channel ([`store`]), its message templates ([`templates`]),
//! Graph API calls made from a session for it ([`graph_session`]), and who may use it
//! ([`access`], sql/grants.sql). Channel administration
//! that is only SQL (access tokens, the webhook URL, waking the workers on a change) is in
//! sql/channels.sql.

pub mod access;
pub mod graph_session;
pub mod store;
mod templates;

use crate::pg::error::{raise, required};
use crate::pg::spi::{Column, column};
use crate::required;
use crate::sql_row;
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;
use whatsapp_cloud::channel;

/// A credential (access token, app secret, verify token): its `Debug` shows [`REDACTED`], and it
/// has no `Display`, so that it cannot reach a log line or an error by accident; [`Secret::expose`]
/// is the one way to its text, where a request or a check needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Shown in place of a secret by `Debug`.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Column for Secret {
    fn read(row: &SpiHeapTupleData, name: &str) -> Self {
        Secret(column(row, name))
    }
}

sql_row! {
    /// What the webhook listener needs to know about a channel, as its HTTP threads share it.
    #[derive(Clone, Debug)]
    pub struct ChannelCredentials {
        pub id: i64,
        pub name: String,
        pub phone_number_id: String,
        pub app_secret: Secret,
        pub verify_token: Secret,
    }
}

sql_row! {
    /// What calling the Graph API for a channel from a session needs (templates, uploads).
    #[derive(Debug)]
    pub struct ChannelApi {
        pub id: i64,
        pub phone_number_id: String,
        pub waba_id: Option<String>,
        pub graph_api_version: Option<String>,
        pub access_token: Secret,
    }
}

/// Adds a channel with the four credentials of the seed guide and returns its id.
/// Each field is checked, and a refusal names the field and where to copy it from.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn wa_add_channel(
    name: Option<&str>,
    phone_number_id: Option<&str>,
    access_token: Option<&str>,
    app_secret: Option<&str>,
    verify_token: Option<&str>,
    waba_id: default!(Option<&str>, "NULL"),
) -> i64 {
    required!(name, phone_number_id, access_token, app_secret, verify_token);
    access::require_admin("add channels");
    if let Err(e) = channel::validate(name, phone_number_id, access_token, app_secret, verify_token) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), e.hint);
    }
    if let Some(Err(e)) = waba_id.map(channel::validate_business_account_id) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), e.hint);
    }
    store::insert_channel(name, phone_number_id, access_token, app_secret, verify_token, waba_id)
}

/// Refuses what cannot be an access token, naming where to get one.
#[pg_extern(immutable, parallel_safe)]
fn _wa_check_access_token(access_token: Option<&str>) {
    if let Err(e) = channel::validate_access_token(required(access_token, "access_token")) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), e.hint);
    }
}
