//! Cryptographic primitives: secrets (random bytes, the warm cache) and argon2id, and the
//! JWS algorithms pg_oauth signs with; X.509 client certificates.

pub mod alg;
pub mod argon2id;
pub mod certificate;
pub mod random;
pub mod secret;
