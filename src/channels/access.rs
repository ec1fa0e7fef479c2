//! Channels as the unit of access (sql/grants.sql): who is calling, and the checks the API's
//! functions written in Rust make before they act on a channel, the same ones the SQL functions
//! make (`_wa_require_channel`, `_wa_require_admin`).

use crate::pg::spi::{column, ok};
use pgrx::prelude::*;

/// The role the session acts as: the `SET ROLE` role, or else the role it logged in as. Also
/// inside the extension's `SECURITY DEFINER` functions, where `current_user` is the extension's
/// owner: Postgres keeps this "outer" user apart, and a definer function cannot change it (SET
/// ROLE is refused there), so it is the role whose grants decide.
#[pg_extern(stable, parallel_safe)]
fn _wa_caller() -> String {
    // SAFETY: both are plain catalog reads of the backend's own state; an unknown oid (a role
    // dropped under a live session) raises an ERROR, which pgrx turns into a Postgres error.
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), false);
        std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
    }
}

/// What a function needs on the channel it acts on.
#[derive(Clone, Copy, Debug)]
pub enum Needed {
    Send,
}

impl Needed {
    fn as_sql(self) -> &'static str {
        match self {
            Needed::Send => "send",
        }
    }
}

/// The channel's id, or the ERROR `insufficient_privilege` (42501) when the caller lacks the
/// privilege (the same whether the channel exists or not), or `undefined_object` for an admin.
/// (`None` under a schema older than grants, still at 0.1.0 after the library was upgraded:
/// then, as before grants, whoever may call the function may use every channel.)
pub fn require_channel(channel: &str, needed: Needed) -> Option<i64> {
    if !schema_has_grants() {
        return None;
    }
    let id: Option<i64> = ok(Spi::get_one_with_args(
        "SELECT _wa_require_channel($1, $2::wa_channel_privilege)",
        &[channel.into(), needed.as_sql().into()],
    ));
    Some(id.expect("_wa_require_channel returns an id or raises"))
}

/// Refuses a caller that is not an admin; `action` completes "permission denied to …".
pub fn require_admin(action: &str) {
    if !schema_has_grants() {
        return;
    }
    ok(Spi::run_with_args("SELECT _wa_require_admin($1)", &[action.into()]));
}

/// Whether the installed schema has channel grants (ALTER EXTENSION ... UPDATE may not have run
/// yet since the library was installed).
fn schema_has_grants() -> bool {
    let found: Option<bool> =
        ok(Spi::get_one("SELECT pg_catalog.to_regprocedure('_wa_require_admin(text)') IS NOT NULL"));
    found == Some(true)
}

/// The channels the caller may read, as the row-level security policies see them.
pub struct Visible {
    ids: Vec<i64>,
    admin: bool,
}

impl Visible {
    /// Whether the caller may read the channel `id` (0, a slot shared by many channels: admins only).
    pub fn may_read(&self, id: i64) -> bool {
        self.admin || self.ids.contains(&id)
    }
}

pub fn visible_channels() -> Visible {
    if !schema_has_grants() {
        return Visible { ids: Vec::new(), admin: true };
    }
    Spi::connect(|client| {
        let row = ok(client.select(
            "SELECT _wa_visible_channels(_wa_caller()) AS ids, _wa_is_admin(_wa_caller()) AS admin",
            None,
            &[],
        ))
        .next()
        .expect("a SELECT without FROM returns one row");
        Visible { ids: column(&row, "ids"), admin: column(&row, "admin") }
    })
}
