//! Message templates: reading them from the business account, and what a send must give.
//! The checks before sending are SQL (`_wa_check_template` in sql/outbound.sql).

use crate::channels::graph_session::{base_and_version, channel_api, session_agent, unreachable_graph_api};
use crate::pg::error::raise;
use crate::required;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use whatsapp_cloud::graph_api;

/// How many body parameters a template (its components as Meta lists them) expects.
#[pg_extern(immutable, strict, parallel_safe)]
fn _wa_template_body_parameters(components: JsonB) -> i32 {
    graph_api::template_body_parameters(&components.0) as i32
}

/// How many body parameters a send's components give.
#[pg_extern(immutable, parallel_safe)]
fn _wa_given_body_parameters(components: Option<JsonB>) -> i32 {
    graph_api::given_body_parameters(components.as_ref().map(|c| &c.0)) as i32
}

/// For a template with named body placeholders, what is wrong with a send's parameters (NULL:
/// nothing; see `graph_api::named_body_parameter_problem`).
#[pg_extern(immutable, parallel_safe)]
fn _wa_named_body_parameter_problem(template_components: JsonB, components: Option<JsonB>) -> Option<String> {
    graph_api::named_body_parameter_problem(&template_components.0, components.as_ref().map(|c| &c.0))
}

/// What a send lacks for the template's header and buttons (NULL: nothing; see
/// `graph_api::header_and_button_problem`).
#[pg_extern(immutable, parallel_safe)]
fn _wa_template_header_button_problem(template_components: JsonB, components: Option<JsonB>) -> Option<String> {
    graph_api::header_and_button_problem(&template_components.0, components.as_ref().map(|c| &c.0))
}

/// Reads the channel's WhatsApp Business Account templates from the Graph API into
/// `wa_templates` (replacing what was there) and returns how many there are. It calls the
/// Graph API from this session, inside the caller's transaction, with the usual timeout.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn wa_sync_templates(channel: Option<&str>) -> i32 {
    required!(channel);
    let api = channel_api(channel);
    let Some(waba_id) = api.waba_id.as_deref() else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("channel '{channel}' has no WhatsApp Business Account id"),
            &format!(
                "Copy it from WhatsApp Manager -> Account tools (or API Setup), then UPDATE wa_channels SET waba_id = '<id>' WHERE name = '{channel}'."
            ),
        )
    };
    let (base, version) = base_and_version(&api);
    let agent = session_agent();
    let mut url = Some(graph_api::templates_url(&base, &version, waba_id));
    let mut templates = Vec::new();
    // Meta pages the list; 50 pages of 100 is far beyond any account's template count.
    for _ in 0..50 {
        let Some(page) = url.take() else { break };
        let answer = agent.get(&page).header("Authorization", format!("Bearer {}", api.access_token.expose())).call();
        let (status, body) = match answer {
            Ok(mut r) => {
                (r.status().as_u16(), r.body_mut().with_config().limit(16 << 20).read_to_vec().unwrap_or_default())
            }
            Err(e) => unreachable_graph_api(e),
        };
        match graph_api::parse_templates(status, &body) {
            Ok((list, next)) => {
                templates.extend(list);
                url = next;
            }
            Err(e) => raise(
                PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
                format!("the Graph API refused to list the templates: {}", e.message),
                graph_api::hint(e.code)
                    .unwrap_or("Check the channel's waba_id and that its access token may read the account."),
            ),
        }
    }
    super::store::replace_templates(api.id, &templates)
}
