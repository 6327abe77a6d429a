//! private_key_jwt client authentication (RFC 7523 §2.2, RFC 7521; SMART Backend
//! Services): the client signs a short-lived JWT with a key whose public part it registered
//! in `oauth.client.jwks`. Keys are registered by value only (no `jku`/`jwks_uri`: the
//! database does not fetch URLs).

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use pgrx::spi::SpiClient;
use serde::Deserialize;

use std::rc::Rc;

use crate::config::gucs::{self, Transport};
use crate::error::quoted;
use crate::error::{OAuthError, Result};
use crate::jose::jwks::{self, jws_name};
use crate::pg::backend;
use crate::pg::shmem::stats;
use crate::store::assertion_jti;
use crate::store::client::{self, Client};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest a SMART Backend Services assertion may live, counted from now ("no more than
/// five minutes in the future"); other clients: `pg_oauth.client_assertion_max_lifetime`.
const SMART_MAX_LIFETIME: i64 = 300;

/// Assertion algorithms: SMART requires RS384 and ES384; the rest are common.
pub const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS384,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::EdDSA,
];

pub fn algorithm_names() -> Vec<String> {
    ALGORITHMS.iter().map(jws_name).collect()
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
    sub: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: i64,
    jti: Option<String>,
}

/// The client an assertion claims to come from (its unverified `iss`), to key the audit
/// trail and lockout before the assertion is checked.
pub fn claimed_client(assertion: &str) -> Option<String> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return None;
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Unverified>(assertion)
        .ok()
        .and_then(|claims| claims.iss)
}

/// Longest client assertion read (a JWT with a few claims is well under 2 KiB); longer
/// ones are refused before anything is decoded.
pub const MAX_ASSERTION_BYTES: usize = 8192;

/// A failure the caller may read: about the assertion's form, found before any client is
/// looked up, or about its claims, found only after its signature verified.
fn fail(description: impl Into<String>) -> OAuthError {
    OAuthError::InvalidClient(description.into())
}

/// A failure that would tell whether a client exists or which keys it has (no such client,
/// no keys, unknown kid, bad signature): the caller reads only "client authentication
/// failed"; the audit trail gets `reason`.
fn hidden(reason: impl Into<String>) -> OAuthError {
    stats::count("client_authentication_failures", &["assertion"]);
    OAuthError::AuthenticationFailed {
        reason: reason.into(),
    }
}

/// Authenticate a client by its assertion; `client_id`, if the request carries one, must
/// name the same client.
pub fn authenticate(
    spi: &mut SpiClient<'_>,
    client_id: Option<&str>,
    assertion_type: &str,
    assertion: &str,
) -> Result<Rc<Client>> {
    let (header, iss) = read_unverified(client_id, assertion_type, assertion)?;
    let Some(issuer) = gucs::issuer() else {
        return Err(OAuthError::no_issuer("accept client assertions"));
    };
    // The token endpoint's URL as either server publishes it names this server too.
    let endpoints = [Transport::PostgRest, Transport::Listener]
        .map(|transport| gucs::endpoint(transport, "token").unwrap_or_default());
    let (client, key) = registered_key(spi, &iss, &header)?;
    let audiences = [
        issuer.as_str(),
        endpoints[0].as_str(),
        endpoints[1].as_str(),
    ];
    let claims = verify(assertion, &key, header.alg, &iss, &audiences)?;
    remember_once(spi, &client, &iss, claims)?;
    if !client.active {
        return Err(fail("client is inactive"));
    }
    Ok(client)
}

/// The header and the claimed client of an assertion, before any signature is checked:
/// only what says which key to check it with, and the checks that need no key.
fn read_unverified(
    client_id: Option<&str>,
    assertion_type: &str,
    assertion: &str,
) -> Result<(jsonwebtoken::Header, String)> {
    if assertion_type != JWT_BEARER {
        return Err(fail(format!(
            "unsupported client_assertion_type {}; use {JWT_BEARER}",
            quoted(assertion_type)
        )));
    }
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(fail(format!(
            "the client assertion is longer than {MAX_ASSERTION_BYTES} bytes"
        )));
    }
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| fail("the client assertion is not a JWT"))?;
    let unverified: Unverified = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
        .map_err(|_| fail("the client assertion's claims are not readable"))?;
    let (Some(iss), Some(sub)) = (unverified.iss, unverified.sub) else {
        return Err(fail(
            "the client assertion needs iss and sub (the client id)",
        ));
    };
    if iss != sub {
        return Err(fail(
            "the client assertion's iss and sub must both be the client id",
        ));
    }
    if client_id.is_some_and(|id| id != iss) {
        return Err(fail("client_id differs from the client assertion's iss"));
    }
    if !ALGORITHMS.contains(&header.alg) {
        return Err(fail(format!(
            "client assertions signed with {} are not accepted; use one of {}",
            jws_name(&header.alg),
            algorithm_names().join(", ")
        )));
    }
    Ok((header, iss))
}

/// The client named `iss` and the registered key the assertion's header selects.
fn registered_key(
    spi: &SpiClient<'_>,
    iss: &str,
    header: &jsonwebtoken::Header,
) -> Result<(Rc<Client>, DecodingKey)> {
    let client = client::load(spi, iss)?;
    let Some((client, jwks)) = client.and_then(|c| c.jwks.clone().map(|j| (c, j))) else {
        return Err(hidden(
            "no client with registered keys is the client assertion's issuer",
        ));
    };
    let key = jwks::select(&jwks, header).map_err(hidden)?;
    Ok((client, key))
}

/// Check the signature, then the claims: expiry, not-before, audience (RFC 7523 §3 allows
/// the token endpoint URL; its revision and oauth4webapi use the issuer identifier: either
/// names this server), issuer and subject.
fn verify(
    assertion: &str,
    key: &DecodingKey,
    alg: Algorithm,
    iss: &str,
    audiences: &[&str],
) -> Result<Claims> {
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.set_audience(audiences);
    validation.set_issuer(&[iss]);
    validation.sub = Some(iss.to_owned());
    validation.validate_nbf = true;
    validation.leeway = u64::try_from(gucs::LEEWAY.get()).unwrap_or(0);
    let data = jsonwebtoken::decode::<Claims>(assertion, key, &validation).map_err(|e| {
        // The signature is checked before the claims: only the key's holder reads the rest.
        match e.kind() {
            ErrorKind::InvalidSignature => {
                return hidden("the client assertion's signature does not verify")
            }
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
                return hidden("the registered key does not fit the assertion's algorithm")
            }
            _ => {}
        }
        fail(match e.kind() {
            ErrorKind::ExpiredSignature => "the client assertion has expired".into(),
            ErrorKind::ImmatureSignature => "the client assertion is not valid yet (nbf)".into(),
            ErrorKind::InvalidAudience => format!(
                "the client assertion's aud must be the issuer {} or the token endpoint {}",
                audiences[1], audiences[0]
            ),
            ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => {
                "the client assertion's iss and sub must both be the client id".into()
            }
            ErrorKind::MissingRequiredClaim(claim) => {
                format!("the client assertion has no {claim} claim")
            }
            _ => "the client assertion is invalid".into(),
        })
    })?;
    Ok(data.claims)
}

/// A verified assertion is accepted once: its lifetime is bounded, and its jti is
/// remembered for as long as it would be accepted (until exp plus the leeway).
fn remember_once(
    spi: &mut SpiClient<'_>,
    client: &Client,
    iss: &str,
    claims: Claims,
) -> Result<()> {
    let now = backend::now_micros() / 1_000_000;
    let max_lifetime = if client.smart {
        SMART_MAX_LIFETIME
    } else {
        i64::from(gucs::CLIENT_ASSERTION_MAX_LIFETIME.get())
    };
    if claims.exp > now + max_lifetime + i64::from(gucs::LEEWAY.get()) {
        return Err(fail(format!(
            "the client assertion expires more than {max_lifetime} seconds from now"
        )));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 255)
        .ok_or_else(|| fail("the client assertion needs a jti of at most 255 characters"))?;
    // A standby cannot record the jti, and an assertion it accepted could be replayed.
    backend::require_primary("authenticate with a client assertion")?;
    let accepted_until = claims.exp.saturating_add(i64::from(gucs::LEEWAY.get()));
    let until = backend::timestamptz(accepted_until.saturating_mul(1_000_000));
    if !assertion_jti::remember(spi, iss, &jti, until)? {
        return Err(fail("the client assertion was already used (jti replay)"));
    }
    Ok(())
}
