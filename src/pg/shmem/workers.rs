//! How many of pg_oauth's dynamic background workers run, cluster-wide, so that they stay
//! well below max_worker_processes (which parallel query, replication and other extensions
//! share): a caller takes a place before it starts one, the worker gives it back as it exits.

use std::sync::atomic::Ordering;

use super::segment::segment;

/// Take a place if fewer than `limit` are taken. Without shared memory (no segment could be
/// made), always.
pub fn enter(limit: u32) -> bool {
    let Some(segment) = segment() else {
        return true;
    };
    segment
        .workers
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// Give a place back.
pub fn leave() {
    if let Some(segment) = segment() {
        let _ = segment
            .workers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}
