//! Channels as the unit of access (sql/grants.sql): who is calling, and the checks the API's
//! functions written in Rust make before they act on a channel, the same ones the SQL functions
//! make (`_wa_require_channel`, `_wa_require_admin`).

use crate::pg::spi::{Column, column, ok};
use pgrx::prelude::*;
use std::cell::RefCell;

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

/// The channels `viewer` may read, as the row-level security policies ask for them
/// (sql/grants.sql: `_wa_apply_policies`): `_wa_channels_visible_to`, kept for as long as the
/// snapshot it was read in is the statement's. A query asks once per policed table it reads
/// (four times for the conversation list), and each answer from PL/pgSQL costs two SECURITY
/// DEFINER calls and four lookups, about 20 µs (the InitPlans of bench/scale.sh's plans): a
/// quarter of a history read. The same snapshot (its xmin, xmax, transactions in progress and
/// command id) sees the same grants, roles and channels, so a kept answer is never stale: a
/// grant committed since, or made by the transaction's last command, means another snapshot.
/// Not SECURITY DEFINER itself (that would set search_path on every call); the function it
/// asks is, and is named with the extension's schema, so no object of the caller's stands in.
#[pg_extern(stable, parallel_safe)]
fn _wa_visible_channels(viewer: &str) -> Vec<i64> {
    let key = VisibleKey::of_statement(viewer);
    let kept =
        VISIBLE.with(|v| v.borrow().as_ref().filter(|(k, _)| Some(k) == key.as_ref()).map(|(_, ids)| ids.clone()));
    if let Some(ids) = kept {
        return ids;
    }
    let Some(query) = visible_query() else { return Vec::new() };
    let ids: Vec<i64> = Spi::connect(|client| {
        let row = ok(client.select(query.as_str(), None, &[viewer.into()])).next();
        row.and_then(|r| column::<Option<Vec<i64>>>(&r, "ids")).unwrap_or_default()
    });
    if let Some(key) = key {
        VISIBLE.with(|v| *v.borrow_mut() = Some((key, ids.clone())));
    }
    ids
}

/// What a kept answer of [`_wa_visible_channels`] holds for.
#[derive(PartialEq)]
struct VisibleKey {
    viewer: String,
    caller: pg_sys::Oid,
    xmin: pg_sys::TransactionId,
    xmax: pg_sys::TransactionId,
    in_progress: u32,
    command: pg_sys::CommandId,
}

impl VisibleKey {
    /// `None` without an active snapshot (then nothing is kept).
    fn of_statement(viewer: &str) -> Option<VisibleKey> {
        // SAFETY: the active snapshot, if any, lives at least as long as this call; only
        // plain fields are copied out of it.
        unsafe {
            let snapshot = pg_sys::GetActiveSnapshot();
            (!snapshot.is_null()).then(|| VisibleKey {
                viewer: viewer.to_string(),
                caller: pg_sys::GetOuterUserId(),
                xmin: (*snapshot).xmin,
                xmax: (*snapshot).xmax,
                in_progress: (*snapshot).xcnt,
                command: (*snapshot).curcid,
            })
        }
    }
}

thread_local! {
    static VISIBLE: RefCell<Option<(VisibleKey, Vec<i64>)>> = const { RefCell::new(None) };
    /// The extension's oid and the query naming its schema: looked up again when the
    /// extension is not the one it was (dropped and created again, maybe elsewhere).
    static VISIBLE_QUERY: RefCell<Option<(pg_sys::Oid, String)>> = const { RefCell::new(None) };
}

/// `SELECT <the extension's schema>._wa_channels_visible_to($1)`; `None` if the extension is
/// not installed.
fn visible_query() -> Option<String> {
    // SAFETY: a catalog lookup by name; missing_ok, so no ERROR.
    let extension = unsafe { pg_sys::get_extension_oid(c"whatsapp_channel".as_ptr(), true) };
    if extension == pg_sys::InvalidOid {
        return None;
    }
    if let Some(query) =
        VISIBLE_QUERY.with(|q| q.borrow().as_ref().filter(|(oid, _)| *oid == extension).map(|(_, q)| q.clone()))
    {
        return Some(query);
    }
    // Read-only SPI (`select`), as the other query here: this runs inside a policy's InitPlan,
    // maybe in parallel mode, where a read-write SPI call raises "cannot assign XIDs during a
    // parallel operation" (bench/scale.sh's all-conversations read found it).
    let schema: Option<String> = Spi::connect(|client| {
        let row = ok(client.select(
            "SELECT pg_catalog.quote_ident(n.nspname) AS schema FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.oid = $1",
            None,
            &[extension.into()],
        ))
        .next();
        row.map(|r| column::<String>(&r, "schema"))
    });
    let query = format!("SELECT {}._wa_channels_visible_to($1) AS ids", schema?);
    VISIBLE_QUERY.with(|q| *q.borrow_mut() = Some((extension, query.clone())));
    Some(query)
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
    let id: i64 = select_one(
        "SELECT _wa_require_channel($1, $2::wa_channel_privilege) AS id",
        &[channel.into(), needed.as_sql().into()],
        "id",
    );
    Some(id)
}

/// Refuses a caller that is not an admin; `action` completes "permission denied to …".
pub fn require_admin(action: &str) {
    if !schema_has_grants() {
        return;
    }
    let _: Option<String> = select_one("SELECT _wa_require_admin($1)::text AS done", &[action.into()], "done");
}

/// Whether the installed schema has channel grants (ALTER EXTENSION ... UPDATE may not have run
/// yet since the library was installed).
fn schema_has_grants() -> bool {
    select_one("SELECT pg_catalog.to_regprocedure('_wa_require_admin(text)') IS NOT NULL AS found", &[], "found")
}

/// Column `name` of the one row a read-only query returns. Read-only SPI (`select`) on
/// purpose: pgrx's read-write calls (`Spi::get_one`, `update`) assign the transaction an id,
/// which a parallel query (these checks run inside policies' InitPlans) and a hot standby
/// (wa_metrics) refuse, and which a read has no use for.
fn select_one<T: Column>(query: &str, args: &[pgrx::datum::DatumWithOid], name: &str) -> T {
    Spi::connect(|client| {
        let row = ok(client.select(query, None, args)).next().expect("a SELECT without FROM returns one row");
        column(&row, name)
    })
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
