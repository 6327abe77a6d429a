//! The tables of schema `oauth`, and the only SQL on them in the crate: clients (with their
//! per-backend cache), policies, token exchange policies and trusted issuers, sessions, refresh-token families, signing keys, assertion
//! ids, FHIR resource types, the audit trail; and the queue of writes deferred until a
//! request fails.

pub mod assertion_jti;
pub mod audit;
pub mod client;
pub mod console;
pub mod deferred;
pub mod exchange_policy;
pub mod fhir;
pub mod login;
pub mod policy;
pub mod refresh;
pub mod session;
pub mod signing_key;
pub mod trusted_issuer;

/// A new row id: a UUIDv7 (RFC 9562), 48 bits of Unix milliseconds then 74 random bits
/// (from the userspace DRBG, no system call). Time-ordered, so inserts append to the
/// index's edge. Sessions and refresh-token families use it.
pub fn new_id() -> [u8; 16] {
    let millis = (crate::pg::backend::now_micros() / 1000) as u64;
    let random = crate::crypto::random::random_bytes::<10>();
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .into_bytes()
}
