//! Errors a SQL function raises for its caller, in the seed guide's words: a SQLSTATE, what is
//! wrong and a hint that says what to do.

use pgrx::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// Raises an ERROR with a SQLSTATE, a message and a hint.
pub fn raise(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    ErrorReport::new(code, message, "whatsapp_channel").set_hint(hint).report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
