//! Cryptographic primitives: secrets (random bytes, argon2id, proofs) and the JWS
//! algorithms pg_oauth signs with.

pub mod alg;
pub mod secret;
