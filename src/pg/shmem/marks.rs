//! A small cluster-wide set of 16-byte ids, per database: ids marked by one backend are seen
//! marked by every other at once, with no table write (so a mark survives the rollback of the
//! transaction that made it). 1024 entries (256 buckets of 4); when a bucket is full the
//! oldest mark there goes. Its user: refresh grants whose revocation is owed but not yet
//! committed (store/refresh.rs).

use super::segment::{
    bucket_of, key_of, segment, MarkEntry as Entry, MARK_BUCKETS as BUCKETS, MARK_WAYS as WAYS,
};

/// Mark `id` (in this database).
pub fn mark(id: &[u8; 16]) {
    let Some(segment) = segment() else {
        return;
    };
    let key = key_of(&[id]);
    segment.locked(|t| {
        let ways = &mut t.marks[bucket_of(&key, BUCKETS)];
        let slot = match ways.iter().position(|e| e.marked != 0 && e.key == key) {
            Some(i) => i,
            None => (0..WAYS).min_by_key(|&i| ways[i].marked).unwrap_or(0),
        };
        ways[slot] = Entry {
            key,
            marked: t.tick,
        };
    });
}

/// Whether `id` is marked (in this database).
pub fn is_marked(id: &[u8; 16]) -> bool {
    let Some(segment) = segment() else {
        return false;
    };
    let key = key_of(&[id]);
    segment.locked(|t| {
        t.marks[bucket_of(&key, BUCKETS)]
            .iter()
            .any(|e| e.marked != 0 && e.key == key)
    })
}

/// Unmark `id` (in this database).
pub fn unmark(id: &[u8; 16]) {
    let Some(segment) = segment() else {
        return;
    };
    let key = key_of(&[id]);
    segment.locked(|t| {
        for e in t.marks[bucket_of(&key, BUCKETS)].iter_mut() {
            if e.marked != 0 && e.key == key {
                e.marked = 0;
            }
        }
    });
}
