//! Client secrets: generation, and verification with the per-backend cache that keeps
//! argon2 (argon2id.rs) off the steady-state path.
//!
//! Why the cache is safe: after a secret verified against the stored hash `H` once, the
//! backend remembers `HMAC(k, secret)` under `(client_id, H)`, where `k` is 256 random bits
//! that exist only in this backend's memory. A later request is accepted from the cache only
//! if the row still holds exactly `H` (read in the same query that fetches the client, so
//! any UPDATE of the secret, rotation or deactivation is seen at once) and the presented
//! secret has the same keyed digest. Nothing leaves the process, and a memory disclosure
//! yields digests that are useless without `k`. Wrong secrets always pay full argon2.

use std::cell::RefCell;
use std::collections::HashMap;

use aws_lc_rs::{constant_time, hmac};

use super::argon2id::{argon2_verify, presentable, verify_dummy};
use super::random::{b64url, random_bytes};

/// Bound on cached (client, hash) pairs per backend; cleared when full.
const CACHE_CAPACITY: usize = 10_000;

/// A new client secret: 256 random bits in the URL-safe base64 alphabet, which needs no
/// escaping in HTTP Basic credentials or form bodies.
pub fn generate() -> String {
    b64url(&random_bytes::<32>())
}

struct WarmCache {
    key: hmac::Key,
    verified: HashMap<(String, String), [u8; 32]>,
}

impl WarmCache {
    fn new() -> WarmCache {
        WarmCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, &random_bytes::<32>()),
            verified: HashMap::new(),
        }
    }
}

thread_local! {
    static WARM: RefCell<Option<WarmCache>> = const { RefCell::new(None) };
}

fn digest(key: &hmac::Key, plain: &str) -> [u8; 32] {
    let tag = hmac::sign(key, plain.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether this backend already verified this exact (client, hash, secret): no argon2.
pub fn verify_warm(client_id: &str, stored_hash: &str, plain: &str) -> bool {
    if presentable(plain).is_empty() {
        return false;
    }
    WARM.with_borrow_mut(|warm| {
        let warm = warm.get_or_insert_with(WarmCache::new);
        let presented = digest(&warm.key, plain);
        warm.verified
            .get(&(client_id.to_owned(), stored_hash.to_owned()))
            .is_some_and(|known| constant_time::verify_slices_are_equal(known, &presented).is_ok())
    })
}

/// Verify `plain` against the stored hash of `client_id`, from the warm cache when this
/// backend already verified this exact (client, hash, secret), else with argon2.
pub fn verify(client_id: &str, stored_hash: &str, plain: &str) -> bool {
    if presentable(plain).is_empty() {
        return verify_dummy("");
    }
    if verify_warm(client_id, stored_hash, plain) {
        return true;
    }
    if !argon2_verify(plain, stored_hash) {
        return false;
    }
    remember_warm(client_id, stored_hash, plain);
    true
}

/// Remember in this backend that `plain` is `client_id`'s secret under `stored_hash`
/// (verified by argon2 here, or proven elsewhere in the cluster: shared/proofs.rs).
pub fn remember_warm(client_id: &str, stored_hash: &str, plain: &str) {
    WARM.with_borrow_mut(|warm| {
        let warm = warm.get_or_insert_with(WarmCache::new);
        if warm.verified.len() >= CACHE_CAPACITY {
            warm.verified.clear();
        }
        let presented = digest(&warm.key, plain);
        warm.verified
            .insert((client_id.to_owned(), stored_hash.to_owned()), presented);
    });
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::crypto::argon2id::hash;

    #[test]
    fn generated_secrets_are_url_safe_and_distinct() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn verification_is_exact_and_cached() {
        let h = hash("s3cret").unwrap();
        assert!(verify("c1", &h, "s3cret"));
        assert!(verify("c1", &h, "s3cret"), "warm path");
        assert!(!verify("c1", &h, "s3creT"));
        assert!(!verify("c2", &h, "wrong"));
        let other = hash("s3cret").unwrap();
        assert!(verify("c1", &other, "s3cret"), "new hash, same secret");
        assert!(!verify("c1", &other, "s3cre"));
        assert!(!verify("c1", &h, ""));
    }

    #[test]
    fn every_byte_of_a_long_secret_counts() {
        let long = "x".repeat(1023) + "a";
        let h = hash(&long).unwrap();
        assert!(verify("c", &h, &long));
        let other = "x".repeat(1023) + "b";
        assert!(!verify("c", &h, &other));
    }
}
