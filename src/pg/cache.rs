//! The per-backend caches (clients, signing keys, lockout states) and their invalidation.
//!
//! Statement triggers on oauth.client, oauth.policy, oauth.signing_key and
//! oauth.client_lockout register a relcache invalidation for their table
//! (`oauth.invalidate_caches()`); PostgreSQL delivers it to every backend when the change
//! commits (and to the changing backend at its next command). Role changes (a policy role
//! dropped, made superuser, granted a privileged role) arrive through the pg_authid and
//! pg_auth_members syscaches. Every lookup accepts pending invalidations first, and every
//! fill reads under a snapshot taken after that ([`Fresh`]), so a committed change applies
//! to the next call in every backend — whatever the caller's snapshot or isolation level.

use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::Hash;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::Result;

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// (client, policy, signing_key, client_lockout) relation oids; InvalidOid until resolved.
    static RELIDS: Cell<[pg_sys::Oid; 4]> = const { Cell::new([pg_sys::InvalidOid; 4]) };
    /// oauth.session's partitions, their primary key indexes, and the attribute numbers the
    /// probe reads.
    static SESSION: Cell<Option<[SessionRel; SESSION_PARTITIONS]>> = const { Cell::new(None) };
    /// Bumped on every invalidation of a source, so a load that raced one is not kept.
    static GENERATIONS: Cell<[u64; 3]> = const { Cell::new([0; 3]) };
}

/// What a cache is filled from; a change to it invalidates the cache in every backend.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// oauth.client, oauth.policy and roles (attributes and memberships).
    Clients = 0,
    /// oauth.signing_key.
    Keys = 1,
    /// oauth.client_lockout.
    Lockouts = 2,
}

fn generation(source: Source) -> u64 {
    GENERATIONS.get()[source as usize]
}

fn bump(source: Source) {
    let mut g = GENERATIONS.get();
    g[source as usize] += 1;
    GENERATIONS.set(g);
}

/// A registered snapshot taken after this backend processed its pending invalidations.
///
/// PostgreSQL sends invalidation messages only after a commit is visible in the proc array,
/// so this snapshot sees every change whose invalidation was processed; a value read under
/// it can be cached under the current generation. Cost: one `GetLatestSnapshot` (served
/// from PostgreSQL's snapshot cache when no transaction ended since the last one) and a
/// copy — about a microsecond.
pub struct Fresh {
    snapshot: pg_sys::Snapshot,
}

impl Fresh {
    pub fn take() -> Fresh {
        accept_invalidations();
        // SAFETY: inside a transaction (every entry point runs in one); the latest snapshot
        // is copied by RegisterSnapshot and released in Drop (or by the resource owner if
        // an ERROR unwinds past us).
        let snapshot = unsafe { pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot()) };
        Fresh { snapshot }
    }

    pub fn snapshot(&self) -> pg_sys::Snapshot {
        self.snapshot
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        // SAFETY: registered in `take` on the same resource owner.
        unsafe { pg_sys::UnregisterSnapshot(self.snapshot) };
    }
}

/// A per-backend cache of values read from tables whose changes send invalidations.
///
/// The rule that keeps it from going stale is built in: a value is loaded only under a
/// [`Fresh`] snapshot, taken after the invalidations its generation reflects were processed,
/// and kept only if no invalidation arrived while it loaded. Bounded: when full, it starts
/// over (a reload is one indexed query).
pub struct Cache<K, V> {
    source: Source,
    capacity: usize,
    /// Values not worth keeping (e.g. "no such client": a flood of unknown ids must not
    /// push real clients out).
    keep: fn(&V) -> bool,
    entries: RefCell<(u64, HashMap<K, V>)>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    pub fn new(source: Source, capacity: usize, keep: fn(&V) -> bool) -> Self {
        Cache {
            source,
            capacity,
            keep,
            entries: RefCell::new((0, HashMap::new())),
        }
    }

    /// The cached value for `key`, if it is current as of the invalidations processed so
    /// far (entry points process pending ones first: see `accept_invalidations`). No
    /// database access: the JWT fast path uses it.
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let current = generation(self.source);
        let mut entries = self.entries.borrow_mut();
        if entries.0 != current {
            entries.1.clear();
            entries.0 = current;
            return None;
        }
        entries.1.get(key).cloned()
    }

    /// The value for `key`: cached, or loaded by `load` under a fresh snapshot.
    pub fn get<Q>(&self, key: &Q, load: impl FnOnce(&Fresh) -> Result<V>) -> Result<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        accept_invalidations();
        if let Some(value) = self.peek(key) {
            return Ok(value);
        }
        let loaded_at = generation(self.source);
        let value = load(&Fresh::take())?;
        let mut entries = self.entries.borrow_mut();
        if generation(self.source) == loaded_at && entries.0 == loaded_at && (self.keep)(&value) {
            if entries.1.len() >= self.capacity {
                entries.1.clear();
            }
            entries.1.insert(key.to_owned(), value.clone());
        }
        Ok(value)
    }

    /// Forget everything (e.g. after this backend changed the source itself).
    pub fn clear(&self) {
        self.entries.borrow_mut().1.clear();
    }
}

/// Whether oauth.client has `column` (the schema may be older than the library until
/// `ALTER EXTENSION pg_oauth UPDATE`). A syscache lookup.
pub fn client_has_column(column: &std::ffi::CStr) -> bool {
    ensure_registered();
    let client = RELIDS.get()[0];
    // SAFETY: a syscache lookup of an attribute by name; InvalidOid yields 0.
    client != pg_sys::InvalidOid && unsafe { pg_sys::get_attnum(client, column.as_ptr()) } > 0
}

/// The partitions of oauth.session (sql/tokens.sql): oauth.session_p00 .. _p15.
pub const SESSION_PARTITIONS: usize = 16;

/// Where the revocation probe looks in one partition of oauth.session (see session::probe).
#[derive(Clone, Copy)]
pub struct SessionRel {
    pub table: pg_sys::Oid,
    pub primary_key: pg_sys::Oid,
    pub revoked_at: i16,
    pub token_hash: i16,
}

/// Partition `slot` of oauth.session, if it exists.
pub fn session_rel(slot: usize) -> Option<SessionRel> {
    SESSION.get().and_then(|parts| parts.get(slot).copied())
}

/// Resolve partition `slot` of oauth.session in `schema`.
fn resolve_session_partition(schema: pg_sys::Oid, slot: usize) -> Option<SessionRel> {
    let name = std::ffi::CString::new(format!("session_p{slot:02}")).ok()?;
    let pkey = std::ffi::CString::new(format!("session_p{slot:02}_pkey")).ok()?;
    let table = relid(schema, &name);
    let primary_key = relid(schema, &pkey);
    // SAFETY: syscache lookups of attributes by name.
    let (revoked_at, token_hash) = unsafe {
        (
            pg_sys::get_attnum(table, c"revoked_at".as_ptr()),
            pg_sys::get_attnum(table, c"token_hash".as_ptr()),
        )
    };
    (table != pg_sys::InvalidOid
        && primary_key != pg_sys::InvalidOid
        && revoked_at > 0
        && token_hash > 0)
        .then_some(SessionRel {
            table,
            primary_key,
            revoked_at,
            token_hash,
        })
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let [client, policy, key, lockout] = RELIDS.get();
    let everything = relid == pg_sys::InvalidOid;
    if everything || relid == client || relid == policy || client == pg_sys::InvalidOid {
        bump(Source::Clients);
    }
    if everything || relid == key || key == pg_sys::InvalidOid {
        bump(Source::Keys);
    }
    if everything || relid == lockout || lockout == pg_sys::InvalidOid {
        bump(Source::Lockouts);
    }
    let ours = relid == client
        || relid == policy
        || relid == key
        || relid == lockout
        || SESSION.get().is_some_and(|parts| {
            parts
                .iter()
                .any(|s| relid == s.table || relid == s.primary_key)
        });
    if everything || ours {
        // The table may be being dropped (DROP EXTENSION): resolve the oids afresh.
        RELIDS.set([pg_sys::InvalidOid; 4]);
        SESSION.set(None);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn role_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    bump(Source::Clients);
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
            // A policy role's attributes (pg_authid) and memberships (pg_auth_members)
            // decide whether it may be used (oauth.policy_role_problem).
            for cache in [
                pg_sys::SysCacheIdentifier::AUTHOID,
                pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE,
            ] {
                pg_sys::CacheRegisterSyscacheCallback(
                    cache as i32,
                    Some(role_callback),
                    pg_sys::Datum::from(0),
                );
            }
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
        let mut parts = [None; SESSION_PARTITIONS];
        for (slot, part) in parts.iter_mut().enumerate() {
            *part = resolve_session_partition(schema, slot);
        }
        // All of them, or none: a schema older than 0.3.0 (before ALTER EXTENSION UPDATE)
        // has no partitions, and the callers then use SQL.
        let all: Option<Vec<SessionRel>> = parts.into_iter().collect();
        SESSION.set(all.and_then(|v| v.try_into().ok()));
    }
}

/// Process pending invalidation messages now (cheap when there are none).
pub fn accept_invalidations() {
    ensure_registered();
    // SAFETY: the same call PostgreSQL makes at transaction start and on lock acquisition.
    unsafe { pg_sys::AcceptInvalidationMessages() };
}
