//! Keys others publish as a JWK Set (RFC 7517), by value: a client's registered keys
//! (private_key_jwt) and a trusted issuer's (token exchange). One rule for which key a JWS
//! header selects and whether it fits the header's algorithm.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header};

use crate::error::quoted;

/// An algorithm's JWS name ("RS256"), as the crate serializes it: the same for its two
/// enums (a JWK's `alg` may also name encryption algorithms).
pub fn jws_name(alg: &impl serde::Serialize) -> String {
    match serde_json::to_value(alg) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// The key of `jwks` that `header` selects, by its `kid` or as the set's only key, and that
/// fits the header's `alg` (the JWK's own `alg`, when it has one, must be the same). The
/// error says why not, for the caller to word (or hide).
pub fn select(jwks: &serde_json::Value, header: &Header) -> Result<DecodingKey, String> {
    let set: JwkSet = serde_json::from_value(jwks.clone())
        .map_err(|_| "the registered jwks is not a usable JWK Set".to_owned())?;
    let jwk = match header.kid.as_deref() {
        Some(kid) => set
            .find(kid)
            .ok_or_else(|| format!("no registered key has kid {}", quoted(kid)))?,
        None if set.keys.len() == 1 => &set.keys[0],
        None => return Err("the JWS header needs a kid".to_owned()),
    };
    if let Some(key_alg) = jwk.common.key_algorithm {
        if jws_name(&key_alg) != jws_name(&header.alg) {
            return Err(format!(
                "the key is registered for {}, not {}",
                jws_name(&key_alg),
                jws_name(&header.alg)
            ));
        }
    }
    DecodingKey::from_jwk(jwk).map_err(|_| "the registered key cannot verify this algorithm".into())
}

/// Whether `alg` is an asymmetric signature algorithm (a shared secret is never a
/// published key).
pub fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
