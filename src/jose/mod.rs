//! JOSE: signing keys (generation, rotation, the JWK Set) and JWS compact tokens.

pub mod jwt;
pub mod keys;
