//! Proofs of verified secrets: one argon2 verification per secret in the whole cluster, and
//! a client that knows its secret is never refused because others guessed wrong.
//!
//! A secret verified once — by argon2 anywhere in the cluster, or when it was written in
//! plaintext to oauth.client — leaves a proof: HMAC(k, key ‖ secret) under key =
//! SHA-256(database, client id, stored hash), k existing only in shared memory (a copy of
//! the database or its backups holds nothing to test guesses against offline; a disclosure
//! of server memory is no worse than one of a backend's warm cache, crypto/secret.rs). Proofs serve
//! twice:
//!
//! - After the lockout check, for every secret: a backend that has not verified the secret
//!   itself accepts a matching proof instead of running argon2, and a backend queueing for
//!   an argon2 slot stops as soon as another one proves the secret (limits.rs). A pool of N
//!   connections starting cold pays one argon2 per client, not N; 8 cold connections with
//!   one slot measured up to 260 ms before (debug build), and no secret work at all after
//!   an administrator wrote the secret. A wrong secret matches no proof and pays argon2 as
//!   before, so failures cost the same whatever exists.
//! - Before the lockout check, only for secrets of at least MIN_SECRET_BYTES: the lockout
//!   (audit.rs) refuses a client id from a source after too many failures; when the real
//!   client shares that source with the guesser (a NAT, a proxy without the client-address
//!   header, Unix sockets), a matching proof lets it through. That check's answer is not
//!   throttled, which is why it needs a secret nobody guesses online (generated secrets
//!   have 43 characters); shorter secrets stay behind the lockout.

use aws_lc_rs::{constant_time, hmac};

use super::segment::{
    bucket_of, key_of, segment, ProofEntry as Entry, Segment, PROOF_BUCKETS as BUCKETS,
    PROOF_WAYS as WAYS,
};
use crate::crypto::argon2id::MAX_SECRET_BYTES;

/// Shortest secret whose proof lets a client past its lockout.
pub const MIN_SECRET_BYTES: usize = 32;

/// Whether `secret` is a proven secret of `client_id` with stored hash `stored_hash`.
pub fn holds(client_id: &str, stored_hash: &str, secret: &str) -> bool {
    if !provable(secret) {
        return false;
    }
    let Some(segment) = segment() else {
        return false;
    };
    let key = key_of(&[client_id.as_bytes(), stored_hash.as_bytes()]);
    let expected = proof(segment, &key, secret);
    let found = segment.locked(|t| {
        t.proofs[bucket_of(&key, BUCKETS)]
            .iter_mut()
            .find(|e| e.used != 0 && e.key == key)
            .map(|e| {
                e.used = t.tick;
                e.proof
            })
    });
    found.is_some_and(|p| constant_time::verify_slices_are_equal(&p, &expected).is_ok())
}

/// Remember that `secret` is `client_id`'s secret under `stored_hash` (just verified by
/// argon2, or just hashed from the plaintext an administrator wrote).
pub fn remember(client_id: &str, stored_hash: &str, secret: &str) {
    if !provable(secret) {
        return;
    }
    let Some(segment) = segment() else {
        return;
    };
    let key = key_of(&[client_id.as_bytes(), stored_hash.as_bytes()]);
    let value = proof(segment, &key, secret);
    segment.locked(|t| {
        let ways = &mut t.proofs[bucket_of(&key, BUCKETS)];
        let slot = match ways.iter().position(|e| e.used != 0 && e.key == key) {
            Some(i) => i,
            None => (0..WAYS).min_by_key(|&i| ways[i].used).unwrap_or(0),
        };
        ways[slot] = Entry {
            key,
            proof: value,
            used: t.tick,
        };
    });
}

/// Secrets that can be hashed at all (crypto/argon2id.rs refuses the others unhashed).
fn provable(secret: &str) -> bool {
    !secret.is_empty() && secret.len() <= MAX_SECRET_BYTES
}

fn proof(segment: &Segment, key: &[u8; 32], secret: &str) -> [u8; 32] {
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &segment.hmac_key);
    let mut ctx = hmac::Context::with_key(&hmac_key);
    ctx.update(key);
    ctx.update(secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}
