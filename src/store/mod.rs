//! The tables of schema `oauth` and their per-backend caches: clients, policies, sessions,
//! refresh-token families, the audit trail, and the writes deferred until a request fails.

pub mod audit;
pub mod client;
pub mod deferred;
pub mod policy;
pub mod refresh;
pub mod session;

/// A new row id: a UUIDv7 (RFC 9562), 48 bits of Unix milliseconds then 74 random bits
/// (from the userspace DRBG, no system call). Time-ordered, so inserts append to the
/// index's edge. Sessions and refresh-token families use it.
pub fn new_id() -> [u8; 16] {
    let millis = (crate::pg::backend::now_micros() / 1000) as u64;
    let random = crate::crypto::secret::random_bytes::<10>();
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .into_bytes()
}
