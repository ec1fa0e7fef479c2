//! The channels' SQL: adding one, reading what the workers and sessions need of it, and its
//! templates. (Administration that is only SQL, such as `wa_set_access_token`, is in
//! sql/channels.sql.)

use super::{ChannelApi, ChannelCredentials};
use crate::pg::error::raise;
use crate::pg::spi::{column, ok};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, PgSqlErrorCode};

pub fn insert_channel(
    name: &str,
    phone_number_id: &str,
    access_token: &str,
    app_secret: &str,
    verify_token: &str,
    waba_id: Option<&str>,
) -> i64 {
    let taken: Option<String> = ok(Spi::get_one_with_args(
        "SELECT (SELECT CASE WHEN name = $1 THEN 'name' ELSE 'phone_number_id' END
                     FROM wa_channels WHERE name = $1 OR phone_number_id = $2 LIMIT 1)",
        &[name.into(), phone_number_id.into()],
    ));
    if let Some(field) = taken {
        raise(
            PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
            format!("a channel with this {field} already exists"),
            "Each channel needs its own name and Phone Number ID; see SELECT name, phone_number_id FROM wa_channels.",
        );
    }
    let id: Option<i64> = ok(Spi::get_one_with_args(
        "WITH c AS (INSERT INTO wa_channels (name, phone_number_id, waba_id) VALUES ($1, $2, $6) RETURNING id)
         INSERT INTO wa_channel_secrets (channel_id, access_token, app_secret, verify_token)
         SELECT id, $3, $4, $5 FROM c RETURNING channel_id",
        &[
            name.into(),
            phone_number_id.into(),
            access_token.into(),
            app_secret.into(),
            verify_token.into(),
            waba_id.into(),
        ],
    ));
    id.expect("INSERT ... RETURNING returns a row")
}

pub fn channel_api(channel: &str) -> Option<ChannelApi> {
    Spi::connect(|client| {
        let row = ok(client.select(
            "SELECT c.id, c.phone_number_id, c.waba_id, c.graph_api_version, s.access_token
               FROM wa_channels c JOIN wa_channel_secrets s ON s.channel_id = c.id WHERE c.name = $1",
            None,
            &[channel.into()],
        ))
        .next()?;
        Some(ChannelApi::from_row(&row))
    })
}

/// Every channel with the secrets the webhook listener checks requests against.
pub fn load_channels() -> Vec<ChannelCredentials> {
    Spi::connect(|client: &SpiClient| {
        let rows = ok(client.select(
            "SELECT c.id, c.name, c.phone_number_id, s.app_secret, s.verify_token
               FROM wa_channels c JOIN wa_channel_secrets s ON s.channel_id = c.id",
            None,
            &[],
        ));
        rows.map(|row| ChannelCredentials::from_row(&row)).collect()
    })
}

/// Every channel's id and name (for metrics' labels).
pub fn channel_names() -> Vec<(i64, String)> {
    Spi::connect(|client: &SpiClient| {
        let rows = ok(client.select("SELECT id, name FROM wa_channels", None, &[]));
        rows.map(|row| (column(&row, "id"), column(&row, "name"))).collect()
    })
}

/// Makes `wa_templates` of a channel exactly `templates`; returns how many.
pub fn replace_templates(channel_id: i64, templates: &[whatsapp_cloud::graph_api::Template]) -> i32 {
    ok(Spi::run_with_args("DELETE FROM wa_templates WHERE channel_id = $1", &[channel_id.into()]));
    for t in templates {
        ok(Spi::run_with_args(
            "INSERT INTO wa_templates (channel_id, name, language, status, category, components, template_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (channel_id, name, language) DO UPDATE
                SET status = excluded.status, category = excluded.category, components = excluded.components,
                    template_id = excluded.template_id, updated_at = pg_catalog.now()",
            &[
                channel_id.into(),
                t.name.as_str().into(),
                t.language.as_str().into(),
                t.status.as_str().into(),
                t.category.as_deref().into(),
                JsonB(t.components.clone()).into(),
                t.id.as_deref().into(),
            ],
        ));
    }
    i32::try_from(templates.len()).unwrap_or(i32::MAX)
}
