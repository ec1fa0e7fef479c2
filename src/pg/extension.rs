//! Whether this database has the extension at this library's version: every worker asks at
//! the start of each transaction, and idles while the answer is no.

use crate::pg::spi::get_one_prepared;
use pgrx::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::cell::Cell;

/// The schema version this library expects (`default_version` in the control file).
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

thread_local! {
    /// Whether this process has said that the installed schema is of another version.
    static WARNED_OTHER_VERSION: Cell<bool> = const { Cell::new(false) };
}

/// Whether the extension is installed in this database at this library's version. If so,
/// puts its schema on this session's search_path after pg_catalog (so nothing created in it
/// can shadow a built-in operator or function), so the statements here need not name it.
///
/// Installed at another version (a new library installed and the server restarted, but no
/// `ALTER EXTENSION whatsapp_channel UPDATE` yet) counts as not installed: the workers would
/// call functions and columns the old schema does not have. So they idle (the listener
/// answers 503, which Meta retries) and say once what to run.
pub fn use_extension_schema() -> bool {
    // (Run by every worker transaction: prepared once, like the listener's batch statements.)
    let installed: Option<String> = get_one_prepared(
        "SELECT (SELECT pg_catalog.set_config('search_path', pg_catalog.format('pg_catalog, %I', n.nspname), false)
                        || ' ' || e.extversion
                   FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                  WHERE e.extname = $1)",
        &["whatsapp_channel".into()],
    );
    let Some(version) = installed.as_deref().and_then(|s| s.rsplit(' ').next()) else { return false };
    let current = version == LIBRARY_VERSION;
    if !current && !WARNED_OTHER_VERSION.replace(true) {
        // (In a transaction, where a cancel may be pending: see pg::log.)
        crate::pg::log::holding_cancels(|| {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "whatsapp_channel {version} is installed in this database, but the library is {LIBRARY_VERSION}: the workers wait until the schema matches"
                ),
                "use_extension_schema",
            )
            .set_hint("Run ALTER EXTENSION whatsapp_channel UPDATE in whatsapp_channel.database.")
            .report(PgLogLevel::WARNING);
        });
    }
    if current {
        WARNED_OTHER_VERSION.set(false);
    }
    current
}
