//! DPoP nonces (RFC 9449 §8), stateless: a nonce names a time window and carries an HMAC of
//! it (and the database) under the key that exists only in the segment, so every backend of
//! the server makes and accepts the same nonces with nothing stored. A restart makes a new
//! key: clients holding an old nonce are asked to use a new one, and retry.

use aws_lc_rs::hmac;

use super::segment::segment;

/// The nonce of time window `window` in this database; None without shared memory.
pub fn nonce(window: i64) -> Option<[u8; 24]> {
    let segment = segment()?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &segment.hmac_key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(b"pg_oauth dpop nonce\0");
    // SAFETY: reading this backend's database oid.
    ctx.update(&unsafe { pgrx::pg_sys::MyDatabaseId }.to_u32().to_le_bytes());
    ctx.update(&window.to_be_bytes());
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&window.to_be_bytes());
    out[8..].copy_from_slice(&ctx.sign().as_ref()[..16]);
    Some(out)
}
