//! Failed client authentications per source and window, whatever client ids they named:
//! a caller that rotates ids (unknown ones cost a dummy argon2 each) is throttled all the
//! same. Counted in shared memory at the moment of the failure, so the throttle applies at
//! once in every backend, with no table write; so are the refusals of a throttled source,
//! which the audit trail shows as one aggregate row per source and window (audit.rs).

use super::segment::{
    bucket_of, key_of, segment, SourceEntry as Entry, SOURCE_BUCKETS as BUCKETS,
    SOURCE_WAYS as WAYS,
};

/// A request refused because its source is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// When the source's window started (seconds since the epoch).
    pub window_start: i64,
    /// Seconds until the window ends (and the throttle with it).
    pub left: i64,
    /// Refusals in this window, this one included.
    pub refused: u32,
}

/// If `source` has had `limit` failures in its current window, count a refusal.
pub fn refuse(source: &str, now: i64, window: i64, limit: u32) -> Option<Refusal> {
    let segment = segment()?;
    let key = key_of(&[source.as_bytes()]);
    segment.locked(|t| {
        let e = t.sources[bucket_of(&key, BUCKETS)]
            .iter_mut()
            .find(|e| e.window_start != 0 && e.key == key && now < e.window_start + window)?;
        if e.failures < limit {
            return None;
        }
        e.refused = e.refused.saturating_add(1);
        Some(Refusal {
            window_start: e.window_start,
            left: e.window_start + window - now,
            refused: e.refused,
        })
    })
}

/// Whether `source` has had `limit` failures in its current window (nothing counted).
pub fn is_throttled(source: &str, now: i64, window: i64, limit: u32) -> bool {
    let Some(segment) = segment() else {
        return false;
    };
    let key = key_of(&[source.as_bytes()]);
    segment.locked(|t| {
        t.sources[bucket_of(&key, BUCKETS)].iter().any(|e| {
            e.window_start != 0
                && e.key == key
                && now < e.window_start + window
                && e.failures >= limit
        })
    })
}

/// Count one failure from `source`; returns the failures in its window, this one included.
/// A window starts at a source's first failure after the previous one ended. When a bucket
/// is full, the entry with the fewest failures makes room (a caller that fills buckets with
/// sources of its own evicts only its own counters first).
pub fn count(source: &str, now: i64, window: i64) -> u32 {
    let Some(segment) = segment() else {
        return 0;
    };
    let key = key_of(&[source.as_bytes()]);
    segment.locked(|t| {
        let ways = &mut t.sources[bucket_of(&key, BUCKETS)];
        let live = |e: &Entry| e.window_start != 0 && now < e.window_start + window;
        if let Some(e) = ways
            .iter_mut()
            .find(|e| e.window_start != 0 && e.key == key)
        {
            if !live(e) {
                e.window_start = now;
                e.failures = 0;
                e.refused = 0;
            }
            e.failures = e.failures.saturating_add(1);
            return e.failures;
        }
        let slot = (0..WAYS)
            .min_by_key(|&i| if live(&ways[i]) { ways[i].failures } else { 0 })
            .unwrap_or(0);
        ways[slot] = Entry {
            key,
            window_start: now,
            failures: 1,
            refused: 0,
        };
        1
    })
}
