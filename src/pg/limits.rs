//! A cluster-wide bound on concurrent argon2 work.
//!
//! Each argon2id verification costs about 17 ms of CPU and 19 MiB; callers who know no
//! secret (unknown ids, wrong secrets) can ask for as many as they like. At most
//! `pg_oauth.argon2_concurrency` run at once in the whole cluster (default: half the CPUs,
//! at least one), so a flood takes at most that share of the machine while warm clients,
//! whose secrets this backend has verified before, never wait (they run no argon2).
//!
//! The slots are locks in PostgreSQL's lock manager, which every backend shares without
//! `shared_preload_libraries`: advisory lock tags with database 0, which SQL's
//! `pg_advisory_lock` cannot name (it always uses the current database), visible in
//! `pg_locks`. They are transaction-level holds, released right after the hash, or by the
//! resource owner if an error intervenes. A caller that finds every slot busy waits up to
//! `pg_oauth.argon2_wait`, then gets `temporarily_unavailable` (HTTP 429, Retry-After):
//! no unbounded queue. Administrative hashing (a secret written to oauth.client) waits
//! until it gets a slot, or until statement_timeout.

use std::time::{Duration, Instant};

use pgrx::pg_sys;

use crate::error::{OAuthError, Result};
use crate::pg::backend;

/// Tag fields that name pg_oauth's slots ("pg_o", "oa").
const TAG_SPACE: u32 = 0x7067_5f6f;
const TAG_KIND: u16 = 0x6f61;
const POLL_MS: i64 = 2;

/// How long to wait for a slot.
pub enum Wait {
    /// Up to this long (pg_oauth.argon2_wait), then temporarily_unavailable.
    Bounded(Duration),
    /// Until a slot is free (or the statement is cancelled).
    Unbounded,
}

/// One argon2 computation's slot; released when dropped.
pub struct Slot {
    tag: pg_sys::LOCKTAG,
}

/// A cluster-wide lock tag of pg_oauth's own: the argon2 slots are 0..n, other uses take
/// numbers from the top (proofs.rs: u32::MAX).
pub fn cluster_tag(slot: u32) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        locktag_field1: 0, // InvalidOid: cluster-wide, out of SQL's reach
        locktag_field2: TAG_SPACE,
        locktag_field3: slot,
        locktag_field4: TAG_KIND,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

impl Slot {
    /// Take one of `slots` slots (pg_oauth.argon2_concurrency, resolved by the caller),
    /// waiting as `wait` says.
    pub fn acquire(slots: u32, wait: Wait) -> Result<Slot> {
        Ok(Slot::acquire_unless(slots, wait, || false)?.expect("never needless"))
    }

    /// Take a slot as `acquire` does, unless `needless()` turns true first (checked before
    /// each round of attempts): then `None`. So a caller whose work another backend has
    /// just done (proofs.rs) stops queueing for a slot it no longer needs.
    pub fn acquire_unless(
        slots: u32,
        wait: Wait,
        mut needless: impl FnMut() -> bool,
    ) -> Result<Option<Slot>> {
        let slots = slots.max(1);
        let deadline = match wait {
            Wait::Bounded(patience) => Some(Instant::now() + patience),
            Wait::Unbounded => None,
        };
        // Start at a slot of our own so that backends spread over the slots.
        // SAFETY: reading this backend's pid.
        let first = unsafe { pg_sys::MyProcPid } as u32 % slots;
        loop {
            if needless() {
                return Ok(None);
            }
            for i in 0..slots {
                let tag = cluster_tag((first + i) % slots);
                // SAFETY: a transaction-level lock on a tag of our own; dontWait, so this
                // never blocks; the resource owner releases it on abort.
                let got =
                    unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, true) };
                if got != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
                    return Ok(Some(Slot { tag }));
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(OAuthError::TemporarilyUnavailable {
                    retry_after_secs: 1,
                });
            }
            backend::sleep_ms(POLL_MS);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return; // the abort releases it
        }
        // SAFETY: releases the hold taken in `acquire`, as UnlockRelationOid does.
        unsafe {
            pg_sys::LockRelease(&self.tag, pg_sys::ExclusiveLock as i32, false);
        }
    }
}
