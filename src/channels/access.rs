//! Channels as the unit of access (sql/grants.sql): who is calling, and the checks the API's
//! functions written in Rust make before they act on a channel, the same ones the SQL functions
//! make (`_wa_require_channel`, `_wa_require_admin`).

use crate::pg::spi::{Column, column, ok};
use pgrx::PgMemoryContexts;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};

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

/// The channels `viewer` may read: [`visible_to`], for SQL (`wa_media_content` asks it about
/// the caller; the policies ask [`wa_visible_channels_of_current_user`]).
#[pg_extern(stable, parallel_safe)]
fn _wa_visible_channels(viewer: &str) -> Vec<i64> {
    visible_to(viewer)
}

/// The channels the current role (`current_user`) may read: what the read policies ask, once
/// per row they filter (`channel_id = ANY (_wa_visible_channels())`, sql/grants.sql). The
/// answer is made once per execution of the statement, at its first row (that call takes
/// invalidations in, as [`visible_to`] does), and kept as an array in the call's own
/// memory (`fn_extra`, made anew at each executor start), so every other row costs a function
/// call and the comparison. A sub-select would make it once per statement too, but an InitPlan
/// is set up and torn down at every execution: 3 µs of a 21 µs history read
/// (docs/benchmarks/2026-12-07-issue-26-policy-cost.md, section 5).
///
/// Written by hand, not with `#[pg_extern]`, which would build the array again at every row;
/// declared in sql/grants.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn wa_visible_channels_of_current_user(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: Postgres calls this with a valid fcinfo whose flinfo lives as long as the
    // expression (fn_mcxt); fn_extra is this function's own, null until set here.
    unsafe {
        let flinfo = (*fcinfo).flinfo;
        let user = pg_sys::GetUserId();
        let kept = (*flinfo).fn_extra as *mut PolicyAnswer;
        // The epoch as well: an expression kept across statements (PL/pgSQL's simple
        // expressions) keeps its fn_extra too, and asks again once an invalidation is taken in
        // (by its next lock, or any policy's first row).
        if !kept.is_null() && (*kept).user == user && (*kept).epoch == EPOCH.get() {
            return (*kept).array;
        }
        let (array, epoch) = PgMemoryContexts::For((*flinfo).fn_mcxt).switch_to(|_| policy_answer(user));
        // In fn_mcxt too, not the current context: that is the row's, reset before the next.
        let kept =
            pg_sys::MemoryContextAlloc((*flinfo).fn_mcxt, std::mem::size_of::<PolicyAnswer>()) as *mut PolicyAnswer;
        kept.write(PolicyAnswer { user, epoch, array });
        (*flinfo).fn_extra = kept.cast();
        array
    }
}

/// The array of channels `user` may read, made in the current memory context: a copy of the
/// session's last answer to a policy if it still holds, or else [`visible_to`]'s; and the
/// [`EPOCH`] it holds for (from before it was read: an invalidation taken in by the read
/// itself makes the next row ask again).
unsafe fn policy_answer(user: pg_sys::Oid) -> (pg_sys::Datum, u64) {
    // SAFETY: as in [`visible_to`]; the copies are of a varlena this function made.
    unsafe {
        pg_sys::AcceptInvalidationMessages();
        let caller = pg_sys::GetOuterUserId();
        let epoch = EPOCH.get();
        let copied = LAST_POLICY_ANSWER.with(|last| {
            let last = last.borrow();
            let last = last.as_ref().filter(|l| l.user == user && l.caller == caller && l.epoch == epoch)?;
            let copy = pg_sys::palloc(last.varlena.len()) as *mut u8;
            std::ptr::copy_nonoverlapping(last.varlena.as_ptr(), copy, last.varlena.len());
            Some(pg_sys::Datum::from(copy))
        });
        if let Some(array) = copied {
            return (array, epoch);
        }
        let name = pg_sys::GetUserNameFromId(user, false);
        let ids = visible_to(&CStr::from_ptr(name).to_string_lossy());
        let array = ids.into_datum().expect("an array is never NULL");
        if EPOCH.get() == epoch && !pg_sys::IsInParallelMode() {
            let ptr = array.cast_mut_ptr::<pg_sys::varlena>();
            let len = pgrx::varsize_any(ptr);
            let varlena = std::slice::from_raw_parts(ptr as *const u8, len).to_vec();
            LAST_POLICY_ANSWER
                .with(|last| *last.borrow_mut() = Some(LastPolicyAnswer { user, caller, epoch, varlena }));
        }
        (array, epoch)
    }
}

/// The session's last answer to a read policy, as the bytes of its array: the next statement's
/// first row copies it instead of looking the role's name up and building the array again.
/// Without it the policies cost a history read 12.1–13.7% instead of 8.9–12.3%, and an unread
/// read 7.4–9.7% instead of 5.2–7.2% (bench/policies.sh, 4 alternating rounds, 7 December 2026).
struct LastPolicyAnswer {
    user: pg_sys::Oid,
    caller: pg_sys::Oid,
    epoch: u64,
    varlena: Vec<u8>,
}

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_wa_visible_channels_of_current_user() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// [`wa_visible_channels_of_current_user`]'s answer, in the memory of the expression calling it.
struct PolicyAnswer {
    user: pg_sys::Oid,
    epoch: u64,
    array: pg_sys::Datum,
}

/// The channels `viewer` may read: `_wa_channels_visible_to`'s answer, kept until something it
/// depends on changes. A query asks once per policed table it reads (four times for the
/// conversation list), and an answer from PL/pgSQL costs two SECURITY DEFINER calls and four
/// lookups, about 20 µs (bench/scale.sh's plans, 6 December 2026).
///
/// Kept the way Postgres keeps its own catalog caches: until an invalidation says that a grant,
/// a channel, a role or a role membership changed (see [`watch_for_changes`]). Committed
/// changes of other sessions are taken in at the start of the next statement, the transaction's
/// own at its next command, and a rollback's are undone the same way; so a grant or revoke takes
/// effect on the next statement, as a GRANT on a table does. The answer is read with the latest
/// snapshot, not the statement's, for the same reason: what was committed before an
/// invalidation arrived is what the invalidation stands for. (It used to be kept for one
/// snapshot only. While webhooks commit, nearly every statement has a snapshot of its own, and
/// the policies then cost a history read 55% instead of 27%: bench/policies.sh with 2,000
/// commits/s beside it, 7 December 2026.)
///
/// Not SECURITY DEFINER itself (that would set search_path on every call); the function it
/// asks is, and is named with the extension's schema, so no object of the caller's stands in.
fn visible_to(viewer: &str) -> Vec<i64> {
    // Invalidations first: a prepared statement run again inside an open transaction locks
    // nothing new, and so takes none in by itself; without this, another session's revoke
    // would wait for the end of the transaction. (A check of one shared counter when none is
    // queued.)
    // SAFETY: called outside any critical section, as every lock acquisition calls it.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    READING.set(false); // (a read that ended in an ERROR)
    // SAFETY: reads the backend's own state.
    let caller = unsafe { pg_sys::GetOuterUserId() };
    let epoch = EPOCH.get();
    let kept = VISIBLE.with(|v| {
        v.borrow().iter().find(|k| k.epoch == epoch && k.caller == caller && k.viewer == viewer).map(|k| k.ids.clone())
    });
    if let Some(ids) = kept {
        return ids;
    }
    let Some(query) = visible_query() else { return Vec::new() };
    watch_for_changes();
    // While it reads, every relation invalidation counts (the tables' oids may not be known
    // yet, or be those of a dropped extension).
    READING.set(true);
    // The latest snapshot is pushed for this read and popped after it (an ERROR in between
    // unwinds the snapshot stack with the transaction or subtransaction). A parallel operation
    // may take no new one: there a catalog snapshot, which GetCatalogSnapshot of no relation
    // takes anew (a parallel worker too: each asks for itself, as the policy is evaluated per
    // row). Never the statement's: in a REPEATABLE READ transaction it is the transaction's,
    // from before a revoke.
    // SAFETY: both snapshots are valid until the next invalidation; PushActiveSnapshot copies them.
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    unsafe {
        let snapshot =
            if parallel { pg_sys::GetCatalogSnapshot(pg_sys::InvalidOid) } else { pg_sys::GetLatestSnapshot() };
        pg_sys::PushActiveSnapshot(snapshot);
    }
    let ids = read_visible(&query, viewer);
    unsafe { pg_sys::PopActiveSnapshot() };
    READING.set(false);
    // Kept only if nothing changed while it was read: an invalidation taken in by the read
    // itself (its locks) may stand for a commit its snapshot did not see.
    if !parallel && EPOCH.get() == epoch {
        VISIBLE.with(|v| {
            let mut kept = v.borrow_mut();
            kept.retain(|k| k.epoch == epoch);
            if kept.len() >= KEPT_VIEWERS {
                kept.remove(0);
            }
            kept.push(Kept { viewer: viewer.to_string(), caller, epoch, ids: ids.clone() });
        });
    }
    ids
}

/// Runs the visible-channels `query` for `viewer`, read-only, so with the active snapshot (the
/// latest, pushed by the caller): pgrx's `select` runs a query read-write once the transaction
/// has an id, and SPI then takes the transaction's snapshot, which in a REPEATABLE READ
/// transaction is as old as the transaction.
fn read_visible(query: &CStr, viewer: &str) -> Vec<i64> {
    Spi::connect(|_client| {
        // SAFETY: SPI is connected for this closure; the one argument is a text Datum made
        // here; the result is read from SPI_tuptable, and copied into Rust vectors before
        // the connection (and its memory) ends. An ERROR in the query unwinds through pgrx.
        unsafe {
            let mut types = [pg_sys::TEXTOID];
            let mut values = [viewer.into_datum().expect("a &str is never NULL")];
            let nulls = [b' ' as std::ffi::c_char];
            let rc = pg_sys::SPI_execute_with_args(
                query.as_ptr(),
                1,
                types.as_mut_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                true,
                1,
            );
            let table = pg_sys::SPI_tuptable;
            if rc != pg_sys::SPI_OK_SELECT as i32 || pg_sys::SPI_processed != 1 || table.is_null() {
                error!("whatsapp_channel: reading the channels a role may read failed (SPI code {rc})");
            }
            let mut null = false;
            let ids = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut null);
            Vec::<i64>::from_datum(ids, null).unwrap_or_default()
        }
    })
}

/// A kept answer of [`_wa_visible_channels`] and what it holds for.
struct Kept {
    viewer: String,
    /// `_wa_caller()`'s role: the answer is empty for a viewer it may not become.
    caller: pg_sys::Oid,
    /// [`EPOCH`] when it was read.
    epoch: u64,
    ids: Vec<i64>,
}

/// Answers kept per session: one per role it acts as, for an app's pooled connection that
/// `SET ROLE`s to each agent in turn (the web inbox does), the oldest dropped first.
const KEPT_VIEWERS: usize = 16;

thread_local! {
    static VISIBLE: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
    /// Moved on by every invalidation that may change an answer: a kept one from before is not used.
    static EPOCH: Cell<u64> = const { Cell::new(0) };
    /// `wa_channels` and `wa_channel_grants`, as [`visible_query`] last found them: an
    /// invalidation of either moves [`EPOCH`] on.
    static WATCHED: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST_POLICY_ANSWER: RefCell<Option<LastPolicyAnswer>> = const { RefCell::new(None) };
    /// Set while an answer is read: then every relation invalidation moves [`EPOCH`] on.
    static READING: Cell<bool> = const { Cell::new(false) };
    /// The extension's oid and the query naming its schema: looked up again when the
    /// extension is not the one it was (dropped and created again, maybe elsewhere).
    static VISIBLE_QUERY: RefCell<Option<(pg_sys::Oid, CString)>> = const { RefCell::new(None) };
}

/// Registers, once per backend, the callbacks that move [`EPOCH`] on: a relation cache
/// invalidation of `wa_channels` or `wa_channel_grants` (their triggers send one at every
/// change: `_wa_visibility_changed`; DROP, TRUNCATE and ALTER send their own) or of every
/// relation, any change to a role (`pg_authid`: superuser, BYPASSRLS, a rename) or to role
/// membership (`pg_auth_members`, through which a grant to a group role counts), and any
/// function replaced (`pg_proc`: an upgrade may replace `_wa_channels_visible_to`).
fn watch_for_changes() {
    if WATCHING.replace(true) {
        return;
    }
    // SAFETY: the callbacks only move a counter on (they must not fail); registered once.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relation_changed), pg_sys::Datum::from(0));
        for cache in [
            pg_sys::SysCacheIdentifier::AUTHOID,
            pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
            pg_sys::SysCacheIdentifier::PROCOID,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(role_changed), pg_sys::Datum::from(0));
        }
    }
}

unsafe extern "C-unwind" fn relation_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let watched = relid == pg_sys::InvalidOid
        || READING.get()
        || WATCHED.with(|w| w.try_borrow().map_or(true, |w| w.contains(&relid)));
    if watched {
        EPOCH.set(EPOCH.get().wrapping_add(1));
    }
}

unsafe extern "C-unwind" fn role_changed(_arg: pg_sys::Datum, _cache: std::ffi::c_int, _hash: u32) {
    EPOCH.set(EPOCH.get().wrapping_add(1));
}

/// Sends the invalidation that makes every session read its channels again (at its next
/// statement; this session at its next command): called by the triggers on `wa_channels` and
/// `wa_channel_grants` (sql/grants.sql).
#[pg_extern(volatile)]
fn _wa_visibility_changed(relid: pg_sys::Oid) {
    // SAFETY: queues a relation cache invalidation, sent at commit (dropped at rollback).
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
}

/// `SELECT <the extension's schema>._wa_channels_visible_to($1)`; `None` if the extension is
/// not installed. Looked up once per extension oid, with the oids of the tables an answer
/// depends on, which go to [`WATCHED`].
fn visible_query() -> Option<CString> {
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
    // Read-only SPI (`select`), as the other query here: this runs inside a policy,
    // maybe in parallel mode, where a read-write SPI call raises "cannot assign XIDs during a
    // parallel operation" (bench/scale.sh's all-conversations read found it).
    let schema: Option<(String, Vec<i64>)> = Spi::connect(|client| {
        let row = ok(client.select(
            "SELECT pg_catalog.quote_ident(n.nspname) AS schema,
                    ARRAY(SELECT c.oid::bigint FROM pg_catalog.pg_class c
                           WHERE c.relnamespace = n.oid AND c.relname IN ('wa_channels', 'wa_channel_grants')) AS tables
               FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
              WHERE e.oid = $1",
            None,
            &[extension.into()],
        ))
        .next();
        row.map(|r| (column::<String>(&r, "schema"), column::<Vec<i64>>(&r, "tables")))
    });
    let (schema, tables) = schema?;
    WATCHED.with(|w| *w.borrow_mut() = tables.into_iter().map(|oid| pg_sys::Oid::from(oid as u32)).collect());
    let query =
        CString::new(format!("SELECT {schema}._wa_channels_visible_to($1)")).expect("no NUL in a quoted identifier");
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
/// which a parallel query (these checks run inside policies) and a hot standby
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
