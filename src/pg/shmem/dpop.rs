//! The DPoP proofs accepted (RFC 9449 §11.1), cluster-wide: a proof is accepted once, by
//! whichever backend sees it first, and remembered for as long as its age would let it be
//! accepted again. 524,288 entries (8192 buckets of 64, 12 bytes each: 6 MiB), each 8 bytes
//! of SHA-256(database, key thumbprint, jti) and the end of its acceptance window, in
//! seconds: at the default window (a 10 s proof age plus 30 s leeway) that is room for about
//! 12,000 proofs a second, sustained. Entries
//! whose window has passed are reused; a live one is never dropped to make room, since that
//! would let its proof be replayed: when a bucket is all live, the proof is refused as
//! "busy" until one ends (bounded memory under a flood, and no replay). Proofs are spent
//! only after the client or token they came with checked out, so filling the table takes
//! credentials.

use super::segment::{bucket_of, key_of, segment, DpopEntry as Entry, DPOP_BUCKETS as BUCKETS};

/// What spending a proof found.
#[derive(Debug, PartialEq, Eq)]
pub enum Spent {
    /// First use: now remembered.
    Fresh,
    /// Seen before, within its window.
    Replayed,
    /// Its bucket holds only live proofs: the first of them ends at this time (Unix µs).
    Full { next_free_us: i64 },
    /// No shared memory here (no dynamic shared memory slot was left): replays cannot be
    /// told apart, so no proof may be accepted.
    Unavailable,
}

/// The bucket a proof's entry goes to (for the tests).
#[cfg(any(test, feature = "pg_test"))]
pub fn bucket(jkt: &str, jti: &str) -> usize {
    bucket_of(&key_of(&[b"dpop", jkt.as_bytes(), jti.as_bytes()]), BUCKETS)
}

/// Spend the proof `jti` of the key with thumbprint `jkt`, accepted until `until_us`.
pub fn spend(jkt: &str, jti: &str, until_us: i64, now_us: i64) -> Spent {
    let Some(segment) = segment() else {
        return Spent::Unavailable;
    };
    let full = key_of(&[b"dpop", jkt.as_bytes(), jti.as_bytes()]);
    let bucket = bucket_of(&full, BUCKETS);
    let mut key = [0u8; 8];
    key.copy_from_slice(&full[24..]);
    // Whole seconds: the window ends at the second after `until_us`, and "now" is the second
    // that has begun, so an entry is never freed early.
    let until = u32::try_from(until_us.div_euclid(1_000_000) + 1).unwrap_or(u32::MAX);
    let now = u32::try_from(now_us.div_euclid(1_000_000)).unwrap_or(u32::MAX);
    segment.locked(|t| {
        let ways = &mut t.dpop[bucket];
        if ways.iter().any(|e| e.until > now && e.key == key) {
            return Spent::Replayed;
        }
        match ways.iter_mut().find(|e| e.until <= now) {
            Some(free) => {
                *free = Entry { key, until };
                Spent::Fresh
            }
            None => Spent::Full {
                next_free_us: i64::from(ways.iter().map(|e| e.until).min().unwrap_or(now))
                    * 1_000_000,
            },
        }
    })
}
