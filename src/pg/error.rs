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

/// A required argument of a SQL function: NULL is an ERROR (22004) that names it, not pgrx's
/// "argument 0 must not be null" (XX000, with a Rust backtrace when RUST_BACKTRACE is set).
pub fn required<T>(value: Option<T>, argument: &str) -> T {
    value.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{argument} must not be NULL"),
            &format!("Pass a value for {argument}."),
        )
    })
}

/// `let a = required(a, "a");` for each argument named: the function's required arguments, in
/// one line.
#[macro_export]
macro_rules! required {
    ($($argument:ident),+ $(,)?) => { $(let $argument = $crate::pg::error::required($argument, stringify!($argument));)+ };
}
