//! Random bytes (from aws-lc's DRBG) and the base64url form tokens and secrets use.

use aws_lc_rs::rand;
use base64::Engine;

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes).expect("the system random number generator failed");
    bytes
}

/// `bytes` in unpadded base64url (RFC 4648 §5).
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
