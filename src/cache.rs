//! Invalidation for the per-backend caches (clients, signing keys, lockout states).
//!
//! Statement triggers on oauth.client, oauth.policy, oauth.signing_key and
//! oauth.client_lockout register a relcache invalidation for their table
//! (`oauth.invalidate_caches()`); PostgreSQL delivers it to every backend when the change commits (and to the changing backend at its next
//! command), so a cache is dropped exactly when its source changes visibly. Role changes
//! (a policy role dropped or made superuser) arrive through the pg_authid syscache.
//! Entry points call `accept_invalidations()` first, so even a long transaction sees a
//! committed change at its next call, as a query would.

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::prelude::*;

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// (client, policy, signing_key, client_lockout) relation oids; InvalidOid until resolved.
    static RELIDS: Cell<[pg_sys::Oid; 4]> = const { Cell::new([pg_sys::InvalidOid; 4]) };
    /// oauth.session, its primary key index, and the attribute number of revoked_at.
    static SESSION: Cell<Option<SessionRel>> = const { Cell::new(None) };
    /// Bumped on every invalidation of the cache, so a load that raced one is not kept.
    static CLIENT_GENERATION: Cell<u64> = const { Cell::new(0) };
    static KEY_GENERATION: Cell<u64> = const { Cell::new(0) };
    static LOCKOUT_GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Where the revocation check looks (see session::is_open).
#[derive(Clone, Copy)]
pub struct SessionRel {
    pub table: pg_sys::Oid,
    pub primary_key: pg_sys::Oid,
    pub revoked_at: i16,
}

pub fn session_rel() -> Option<SessionRel> {
    SESSION.get()
}

pub fn client_generation() -> u64 {
    CLIENT_GENERATION.get()
}

pub fn key_generation() -> u64 {
    KEY_GENERATION.get()
}

pub fn lockout_generation() -> u64 {
    LOCKOUT_GENERATION.get()
}

fn bump(generation: &'static std::thread::LocalKey<Cell<u64>>) {
    generation.with(|g| g.set(g.get() + 1));
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let [client, policy, key, lockout] = RELIDS.get();
    let everything = relid == pg_sys::InvalidOid;
    if everything || relid == client || relid == policy || client == pg_sys::InvalidOid {
        bump(&CLIENT_GENERATION);
    }
    if everything || relid == key || key == pg_sys::InvalidOid {
        bump(&KEY_GENERATION);
    }
    if everything || relid == lockout || lockout == pg_sys::InvalidOid {
        bump(&LOCKOUT_GENERATION);
    }
    let session = SESSION.get();
    let ours = relid == client
        || relid == policy
        || relid == key
        || relid == lockout
        || session.is_some_and(|s| relid == s.table || relid == s.primary_key);
    if everything || ours {
        // The table may be being dropped (DROP EXTENSION): resolve the oids afresh.
        RELIDS.set([pg_sys::InvalidOid; 4]);
        SESSION.set(None);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn authid_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    bump(&CLIENT_GENERATION);
}

fn relid(schema: pg_sys::Oid, name: &std::ffi::CStr) -> pg_sys::Oid {
    // SAFETY: a plain catalog lookup, outside any invalidation callback.
    unsafe { pg_sys::get_relname_relid(name.as_ptr(), schema) }
}

/// Register the callbacks (once per backend) and resolve the table oids.
pub fn ensure_registered() {
    if !REGISTERED.get() {
        // SAFETY: registering invalidation callbacks is allowed at any time in a backend.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0));
            pg_sys::CacheRegisterSyscacheCallback(
                pg_sys::SysCacheIdentifier::AUTHOID as i32,
                Some(authid_callback),
                pg_sys::Datum::from(0),
            );
        }
        REGISTERED.set(true);
    }
    if RELIDS.get()[0] == pg_sys::InvalidOid || SESSION.get().is_none() {
        // SAFETY: catalog lookups by name; missing_ok.
        let schema = unsafe { pg_sys::get_namespace_oid(c"oauth".as_ptr(), true) };
        RELIDS.set([
            relid(schema, c"client"),
            relid(schema, c"policy"),
            relid(schema, c"signing_key"),
            relid(schema, c"client_lockout"),
        ]);
        let table = relid(schema, c"session");
        let primary_key = relid(schema, c"session_pkey");
        // SAFETY: a syscache lookup of an attribute by name.
        let revoked_at = unsafe { pg_sys::get_attnum(table, c"revoked_at".as_ptr()) };
        SESSION.set(
            (table != pg_sys::InvalidOid && primary_key != pg_sys::InvalidOid && revoked_at > 0)
                .then_some(SessionRel {
                    table,
                    primary_key,
                    revoked_at,
                }),
        );
    }
}

/// Process pending invalidation messages now (cheap when there are none).
pub fn accept_invalidations() {
    ensure_registered();
    // SAFETY: the same call PostgreSQL makes at transaction start and on lock acquisition.
    unsafe { pg_sys::AcceptInvalidationMessages() };
}

/// AFTER ... FOR EACH STATEMENT on the cached tables: invalidate every backend's caches at
/// commit; for oauth.signing_key also tell PostgREST (channel `pgrst`) to reload its config,
/// i.e. re-read the keys through `oauth.postgrest_pre_config()`.
#[pg_trigger]
fn invalidate_caches<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, pgrx::datum::TryFromDatumError> {
    let relid = trigger.relid().expect("a table trigger");
    // SAFETY: queues an invalidation message for this relation; delivered at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    if trigger.table_name().is_ok_and(|t| t == "signing_key") {
        Spi::run("SELECT pg_catalog.pg_notify('pgrst', 'reload config')").expect("NOTIFY pgrst");
    }
    Ok(None::<PgHeapTuple<'a, AllocatedByPostgres>>)
}
