//! The action outbox on the delivery worker: Graph API calls that are not messages (block and
//! unblock, call actions, template creation and deletion, group management;
//! sql/outbound_actions.sql queues them).
//! The same rules as for messages: claimed (committed as `sending`) on the main thread, performed
//! by the sender threads (no Postgres calls there), recorded in a transaction of the main thread,
//! one subtransaction each, and retried by the same classes of errors
//! ([`graph_api::classify`]). Actions are few: they are claimed only when a commit queued one,
//! when one falls due, or at start, never on the way of a turn that claims messages.

use super::sender_pool::ActionResult;
use crate::channels::Secret;
use crate::pg::spi::{Column, column, ok};
use crate::pg::{subtransaction, transaction};
use crate::sql_row;
use crate::{log, warning};
use pgrx::JsonB;
use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;
use whatsapp_cloud::graph_api::{self, ActionKind, ActionOutcome, GraphError, Method, Retry};

impl Column for ActionKind {
    fn read(row: &SpiHeapTupleData, name: &str) -> Self {
        let label = column::<String>(row, name);
        ActionKind::from_sql(&label).unwrap_or_else(|| error!("whatsapp_channel: unknown action kind {label:?}"))
    }
}

sql_row! {
    /// An action claimed for performing: `sending` until its result is recorded. (Its `Debug`
    /// leaves the request and the token out.)
    pub struct ClaimedAction {
        pub id: i64,
        pub channel_id: i64,
        pub kind: ActionKind,
        pub target: Option<String>,
        /// The Graph API body (none for a template's deletion).
        pub request: Option<String>,
        pub attempts: i32,
        pub phone_number_id: String,
        pub waba_id: Option<String>,
        pub graph_api_version: String,
        pub access_token: Secret,
    }
}

impl std::fmt::Debug for ClaimedAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedAction")
            .field("id", &self.id)
            .field("channel_id", &self.channel_id)
            .field("kind", &self.kind)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// One action's request, for a sender thread.
pub struct ActionRequest {
    pub id: i64,
    pub kind: ActionKind,
    pub method: Method,
    pub url: String,
    pub access_token: Secret,
    pub body: Option<String>,
}

impl ClaimedAction {
    /// The request, or why it cannot be made (a template action of a channel whose business
    /// account id was cleared since it was queued).
    pub fn request(&self, base_url: &str) -> Result<ActionRequest, String> {
        let owner = if self.kind.on_business_account() {
            self.waba_id.as_deref().ok_or("the channel has no waba_id (cleared since the action was queued)")?
        } else {
            &self.phone_number_id
        };
        Ok(ActionRequest {
            id: self.id,
            kind: self.kind,
            method: self.kind.method(),
            url: self.kind.url(base_url, &self.graph_api_version, owner, self.target.as_deref()),
            access_token: self.access_token.clone(),
            body: if self.kind.has_body() { self.request.clone() } else { None },
        })
    }
}

/// Claims up to `max` due actions (see _wa_claim_actions). In the claim's transaction.
pub fn claim(max: i32, default_version: &str) -> Vec<ClaimedAction> {
    Spi::connect_mut(|client| {
        let rows =
            ok(client.update("SELECT * FROM _wa_claim_actions($1, $2)", None, &[max.into(), default_version.into()]));
        rows.map(|row| ClaimedAction::from_row(&row)).collect()
    })
}

/// Seconds until the next queued action falls due, if one is queued.
pub fn next_due_in() -> Option<f64> {
    ok(Spi::get_one("SELECT _wa_next_action_due_in()"))
}

/// Claimed actions a restart interrupted are due again (see _wa_requeue_interrupted_actions).
pub fn requeue_interrupted() {
    let n: i32 = ok(Spi::get_one("SELECT _wa_requeue_interrupted_actions()")).unwrap_or(0);
    if n > 0 {
        log!(
            "whatsapp_channel: {n} action(s) interrupted by a restart are queued again and performed again \
             (Meta echoes nothing that could tell whether they were done; see README, \"Actions\")"
        );
    }
}

/// An action's answer, to record, and how often recording it failed.
pub struct ActionAnswer {
    pub action: ClaimedAction,
    pub result: ActionResult,
    pub failed_records: u32,
}

/// Records the answers, each in a subtransaction of one transaction; returns those that could
/// not be recorded, to be recorded again on the next turn (never performed again). One that
/// failed [`MAX_FAILED_RECORDS`] times is dropped with a warning: it stays `sending`, and the
/// next start performs it again.
pub fn record_all(answers: Vec<ActionAnswer>) -> Vec<ActionAnswer> {
    if answers.is_empty() {
        return answers;
    }
    let committed = transaction::run(|| {
        answers
            .iter()
            .map(|a| subtransaction::run(|| record(&a.action, &a.result)).err())
            .collect::<Vec<Option<String>>>()
    });
    let failures = match committed {
        Ok(f) => f,
        Err(e) => vec![Some(e); answers.len()],
    };
    answers
        .into_iter()
        .zip(failures)
        .filter_map(|(a, failure)| {
            let e = failure?;
            if a.failed_records + 1 >= MAX_FAILED_RECORDS {
                warning!(
                    "whatsapp_channel: the result of action {} could not be recorded ({e}); it stays 'sending' and is performed again at the next start",
                    a.action.id
                );
                return None;
            }
            warning!("whatsapp_channel: could not record the result of action {}, will retry: {e}", a.action.id);
            Some(ActionAnswer { failed_records: a.failed_records + 1, ..a })
        })
        .collect()
}

const MAX_FAILED_RECORDS: u32 = 5;

/// Records one action's answer: done (with Meta's per-item errors, if some items failed), retried
/// after its backoff, or failed for good.
fn record(action: &ClaimedAction, result: &ActionResult) {
    let error = match result {
        ActionResult::Answered(ActionOutcome::Done { result, partly_failed }) => {
            let (code, title, details) = partly_failed.as_ref().map_or((None, None, None), |e| {
                (e.code.and_then(|c| i32::try_from(c).ok()), Some(e.message.as_str()), e.details.as_deref())
            });
            ok(Spi::run_with_args(
                "SELECT _wa_action_done($1, $2, $3, $4, $5)",
                &[action.id.into(), JsonB(result.clone()).into(), code.into(), title.into(), details.into()],
            ));
            return;
        }
        ActionResult::Answered(ActionOutcome::Failed(e)) => e.clone(),
        ActionResult::Invalid(reason) => {
            fail(action, &GraphError { code: None, http_status: 0, message: reason.clone(), details: None });
            return;
        }
        ActionResult::Transport(reason) => {
            GraphError { code: None, http_status: 0, message: reason.clone(), details: None }
        }
    };
    let retry = match result {
        ActionResult::Transport(_) => Retry::Backoff,
        _ => graph_api::classify(&error),
    };
    let attempts = u32::try_from(action.attempts).unwrap_or(u32::MAX);
    let again = match retry {
        Retry::Backoff | Retry::PairLimit => attempts < graph_api::MAX_ATTEMPTS,
        Retry::Few => attempts < graph_api::FEW_ATTEMPTS,
        // A refused token pauses the channel's messages (the next send says so); an action
        // fails with the hint rather than wait for it.
        Retry::Credentials | Retry::Never => false,
    };
    let code = error.code.and_then(|c| i32::try_from(c).ok());
    if again {
        let delay = graph_api::backoff(retry, attempts, graph_api::jitter(action.id, attempts));
        log!(
            "whatsapp_channel: action {} ({:?}) not done (attempt {attempts}): {}; retrying in {:.1}s",
            action.id,
            action.kind,
            error.message,
            delay.as_secs_f64()
        );
        ok(Spi::run_with_args(
            "SELECT _wa_action_retry($1, $2, $3, $4, $5)",
            &[
                action.id.into(),
                delay.as_secs_f64().into(),
                code.into(),
                error.message.as_str().into(),
                error.details.as_deref().into(),
            ],
        ));
    } else {
        let title = if matches!(retry, Retry::Backoff | Retry::PairLimit | Retry::Few) {
            format!("gave up after {attempts} attempts: {}", error.message)
        } else {
            error.message.clone()
        };
        fail(action, &GraphError { message: title, ..error });
    }
}

fn fail(action: &ClaimedAction, error: &GraphError) {
    warning!("whatsapp_channel: action {} ({:?}) failed: {}", action.id, action.kind, error.message);
    let code = error.code.and_then(|c| i32::try_from(c).ok());
    ok(Spi::run_with_args(
        "SELECT _wa_action_failed($1, $2, $3, $4)",
        &[action.id.into(), code.into(), error.message.as_str().into(), error.details.as_deref().into()],
    ));
}
