//! Named locks of this database in PostgreSQL's lock manager, for what no table row should
//! carry: held to the end of the transaction (or released by its abort), waited for under
//! lock_timeout, shown in pg_locks. SQL's pg_advisory_lock cannot name them (its tags end in
//! 1 or 2; ours in TAG_KIND).

use pgrx::pg_sys;

const TAG_KIND: u16 = 0x6f62; // "ob"

fn tag(name: &str) -> pg_sys::LOCKTAG {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    let hash = hasher.finish();
    pg_sys::LOCKTAG {
        // SAFETY: this backend's database.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: (hash >> 32) as u32,
        locktag_field3: hash as u32,
        locktag_field4: TAG_KIND,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

fn acquire(name: &str, mode: u32) {
    let tag = tag(name);
    // SAFETY: a transaction-level lock on a tag of our own, waited for (interruptibly, under
    // lock_timeout, with deadlock detection); the transaction's end releases it.
    unsafe {
        pg_sys::LockAcquire(&tag, mode as pg_sys::LOCKMODE, false, false);
    }
}

/// Share `name` until the transaction ends: many may share it, none while it is held
/// exclusively.
pub fn share(name: &str) {
    acquire(name, pg_sys::ShareLock);
}

/// Hold `name` alone until the transaction ends, after every share of it has ended.
pub fn exclusive(name: &str) {
    acquire(name, pg_sys::ExclusiveLock);
}
