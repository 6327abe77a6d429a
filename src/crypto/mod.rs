//! Cryptographic primitives: secrets (random bytes, the warm cache) and argon2id, and the
//! JWS algorithms pg_oauth signs with.

pub mod alg;
pub mod argon2id;
pub mod random;
pub mod secret;
