//! Client secrets: generation, argon2id hashing, verification, and the per-backend
//! cache that keeps argon2 off the steady-state path.
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

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::{constant_time, hmac, rand};
use base64::Engine;

use crate::error::{OAuthError, Result};

/// OWASP Password Storage Cheat Sheet (2023): argon2id, m = 19 MiB, t = 2, p = 1.
const M_COST_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Secrets longer than this are refused before any hashing work (argon2 accepts up to
/// 4 GiB; a bound keeps a hostile caller from making us hash megabytes).
pub const MAX_SECRET_BYTES: usize = 4096;

/// A hash of 256 random bits nobody knows, with the same parameters as real hashes, so
/// that authenticating an unknown client costs the same as a wrong secret.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$BM5VaxqGqSimc8sZ0BPx9g$dtRkbGchv3X43RZ2gLNVT2Yz/uhkpNLv8v53GBBSS8o";

/// Bound on cached (client, hash) pairs per backend; cleared when full.
const CACHE_CAPACITY: usize = 10_000;

fn hasher() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes).expect("the system random number generator failed");
    bytes
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new client secret: 256 random bits in the URL-safe base64 alphabet, which needs no
/// escaping in HTTP Basic credentials or form bodies.
pub fn generate() -> String {
    b64url(&random_bytes::<32>())
}

/// Whether `value` is an argon2 PHC string we can verify against (kept as is on import).
pub fn is_argon2_phc(value: &str) -> bool {
    let Ok(hash) = PasswordHash::new(value) else {
        return false;
    };
    Algorithm::try_from(hash.algorithm).is_ok()
        && Params::try_from(&hash).is_ok()
        && hash.salt.is_some()
        && hash.hash.is_some()
}

/// Hash a plaintext secret to an argon2id PHC string.
pub fn hash(plain: &str) -> Result<String> {
    if plain.is_empty() {
        return Err(OAuthError::InvalidRequest(
            "a client secret must not be empty".into(),
        ));
    }
    if plain.len() > MAX_SECRET_BYTES {
        return Err(OAuthError::InvalidRequest(format!(
            "a client secret must be at most {MAX_SECRET_BYTES} bytes"
        )));
    }
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| OAuthError::ServerError(format!("salt encoding failed: {e}")))?;
    hasher()
        .hash_password(plain.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| OAuthError::ServerError(format!("argon2 hashing failed: {e}")))
}

/// Full argon2 verification (constant-time comparison inside the argon2 crate).
/// The hash's own algorithm and parameters are used, so imported hashes verify too.
fn argon2_verify(plain: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(plain.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spend the same argon2 work as a real verification, then fail.
pub fn verify_dummy(plain: &str) -> bool {
    let _ = argon2_verify(plain, DUMMY_HASH);
    false
}

struct WarmCache {
    key: hmac::Key,
    verified: HashMap<(String, String), [u8; 32]>,
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

/// Verify `plain` against the stored hash of `client_id`, from the warm cache when this
/// backend already verified this exact (client, hash, secret), else with argon2.
pub fn verify(client_id: &str, stored_hash: &str, plain: &str) -> bool {
    if plain.is_empty() || plain.len() > MAX_SECRET_BYTES {
        return verify_dummy("");
    }
    let cache_key = (client_id.to_owned(), stored_hash.to_owned());
    let presented = WARM.with_borrow_mut(|warm| {
        let warm = warm.get_or_insert_with(|| WarmCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, &random_bytes::<32>()),
            verified: HashMap::new(),
        });
        digest(&warm.key, plain)
    });
    let warm_hit = WARM.with_borrow(|warm| {
        warm.as_ref()
            .and_then(|w| w.verified.get(&cache_key))
            .is_some_and(|known| constant_time::verify_slices_are_equal(known, &presented).is_ok())
    });
    if warm_hit {
        return true;
    }
    if !argon2_verify(plain, stored_hash) {
        return false;
    }
    WARM.with_borrow_mut(|warm| {
        if let Some(warm) = warm.as_mut() {
            if warm.verified.len() >= CACHE_CAPACITY {
                warm.verified.clear();
            }
            warm.verified.insert(cache_key, presented);
        }
    });
    true
}

#[cfg(test)]
mod unit {
    use super::*;

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
    fn hashes_are_argon2id_with_owasp_parameters() {
        let h = hash("verysecret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(is_argon2_phc(&h));
        assert!(!is_argon2_phc("verysecret"));
        assert!(!is_argon2_phc("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(is_argon2_phc(DUMMY_HASH));
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
