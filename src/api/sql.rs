//! The SQL API applications call (granted to `oauth_app`): tokens, verification,
//! revocation, introspection, the JWK Set and metadata. Thin wrappers: the flows are in
//! flow/, and each raises its OAuth error at this boundary.

use pgrx::prelude::*;

use crate::authn::dpop::{self, Presented};
use crate::config::gucs::Transport;
use crate::crypto::certificate::Certificate;
use crate::error::{OAuthError, OrRaise};
use crate::flow::deferred;
use crate::flow::exchange::ExchangeRequest;
use crate::flow::issue::{self, TokenRequest};
use crate::flow::metadata;
use crate::flow::token::{self, Possession};
use crate::jose::ring;
use crate::pg::backend;
use crate::pg::jsonb::Jsonb;
use crate::pg::redact;
use crate::pg::shmem::stats;

/// The client credentials grant (RFC 6749 §4.4), the refresh token grant (§6) and token
/// exchange (RFC 8693, `subject_token` and the rest): returns
/// the RFC 6749 §5.1 response as jsonb; with a DPoP proof (RFC 9449) the access token is
/// bound to its key. Errors are raised with the OAuth error code first in the message and a
/// SQLSTATE per code (see README).
#[pg_extern(name = "auth_token", volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments)] // one per RFC 6749/7521/8693/9449 token request parameter
fn auth_token_0_3(
    grant_type: Option<&str>,
    client_id: default!(Option<&str>, "NULL"),
    client_secret: default!(Option<&str>, "NULL"),
    scope: default!(Option<&str>, "NULL"),
    audience: default!(Option<&str>, "NULL"),
    refresh_token: default!(Option<&str>, "NULL"),
    client_assertion_type: default!(Option<&str>, "NULL"),
    client_assertion: default!(Option<&str>, "NULL"),
    dpop: default!(Option<&str>, "NULL"),
    subject_token: default!(Option<&str>, "NULL"),
    subject_token_type: default!(Option<&str>, "NULL"),
    actor_token: default!(Option<&str>, "NULL"),
    actor_token_type: default!(Option<&str>, "NULL"),
    requested_token_type: default!(Option<&str>, "NULL"),
) -> Jsonb {
    let _sensitive = redact::sensitive();
    let req = TokenRequest {
        grant_type,
        client_id,
        client_secret,
        other_readings: &[],
        scope,
        audience,
        refresh_token,
        client_assertion_type,
        client_assertion,
        dpop,
        certificate: None,
        exchange: ExchangeRequest {
            subject_token,
            subject_token_type,
            actor_token,
            actor_token_type,
            requested_token_type,
        },
        transport: None,
    };
    let issued = deferred::on_failure(|| Spi::connect_mut(|spi| issue::issue(spi, &req)));
    if let Err(err) = &issued {
        stats::count("refusals", &["token", err.code()]);
    }
    Jsonb(issued.or_raise())
}

/// `oauth.auth_token` as schemas before 0.3.0 declare it (8 arguments, this symbol), for a
/// new library before `ALTER EXTENSION pg_oauth UPDATE`; no SQL of its own.
#[pg_extern(sql = false, volatile, security_definer)]
#[allow(clippy::too_many_arguments)]
fn auth_token(
    grant_type: Option<&str>,
    client_id: Option<&str>,
    client_secret: Option<&str>,
    scope: Option<&str>,
    audience: Option<&str>,
    refresh_token: Option<&str>,
    client_assertion_type: Option<&str>,
    client_assertion: Option<&str>,
) -> Jsonb {
    auth_token_0_3(
        grant_type,
        client_id,
        client_secret,
        scope,
        audience,
        refresh_token,
        client_assertion_type,
        client_assertion,
        None,
        None,
        None,
        None,
        None,
        None,
    )
}

/// Verify an access token; returns its claims or raises invalid_token.
///
/// Parallel restricted: parallel workers may not see the pg_oauth.* settings (a worker
/// defines them only when it first loads the library, inside the parallel operation).
/// No `SET search_path` clause, unlike every other SECURITY DEFINER function here: this is
/// the per-request hot path, its fast path runs no SQL at all, and each fallback that does
/// runs under `db::with_safe_search_path` (see `verify`).
#[pg_extern(stable, parallel_restricted, security_definer)]
fn auth_verify(token: Option<&str>) -> Jsonb {
    let _sensitive = redact::sensitive();
    Jsonb::object(token::verify(token.unwrap_or(""), None, Possession::default()).or_raise())
}

/// Verify an access token and that `audience` is one of its audiences (see auth_verify).
#[pg_extern(name = "auth_verify", stable, parallel_restricted, security_definer)]
fn auth_verify_audience(token: Option<&str>, audience: Option<&str>) -> Jsonb {
    let _sensitive = redact::sensitive();
    Jsonb::object(
        token::verify(
            token.unwrap_or(""),
            Some(audience.unwrap_or("")),
            Possession::default(),
        )
        .or_raise(),
    )
}

/// Verify an access token with what binds it to its holder (see `token::check_binding`): a
/// DPoP proof (RFC 9449 §7.1), where `htm` and `htu` are the method and public URL of the
/// request the token and proof came with, and the request's TLS client certificate (RFC 8705
/// §3). A NULL `dpop` presents the token as a bearer token (refused if it is DPoP-bound).
/// `audience` as in auth_verify(token, audience).
// Volatile: it spends the proof, so it must run exactly as often as it is called.
#[pg_extern(name = "auth_verify", volatile, parallel_restricted, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_verify_bound(
    token: Option<&str>,
    dpop: Option<&str>,
    htm: Option<&str>,
    htu: Option<&str>,
    audience: default!(Option<&str>, "NULL"),
    client_certificate: default!(Option<&str>, "NULL"),
) -> Jsonb {
    let _sensitive = redact::sensitive();
    let urls = [htu.unwrap_or("").to_owned()];
    // No proof (NULL): the token is presented as a bearer token, which a bound one is not.
    let presented = dpop.map(|proof| Presented {
        proof,
        method: htm.unwrap_or(""),
        urls: &urls,
    });
    let certificate = client_certificate
        .map(|c| Certificate::parse(c).map_err(|why| OAuthError::InvalidRequest(why.into())))
        .transpose()
        .or_raise();
    let held = Possession {
        dpop: presented.as_ref(),
        certificate: certificate.as_ref(),
    };
    Jsonb::object(token::verify(token.unwrap_or(""), audience, held).or_raise())
}

/// The DPoP nonce (RFC 9449 §8) proofs must carry now, for a resource server's
/// `DPoP-Nonce` header; NULL while `pg_oauth.dpop_nonce` is off.
#[pg_extern(volatile, parallel_restricted, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_dpop_nonce() -> Option<String> {
    crate::config::gucs::DPOP_NONCE
        .get()
        .then(|| dpop::current_nonce(backend::now_micros()))
        .flatten()
}

/// Revoke an access or refresh token (RFC 7009). Idempotent; unknown tokens are not an
/// error. Returns true when this call revoked something live.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_revoke(token: Option<&str>) -> bool {
    let _sensitive = redact::sensitive();
    let Some(token) = token else { return false };
    Spi::connect_mut(|spi| match token::find(spi, token)? {
        Some(found) => {
            let reason = format!(
                "revoked with oauth.auth_revoke() by {}",
                backend::session_user()
            );
            token::revoke_found(spi, &found, &reason)
        }
        None => Ok(false),
    })
    .or_raise()
}

/// RFC 7662 token introspection. Never raises for bad tokens: `{"active": false}`.
#[pg_extern(stable, parallel_restricted, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_introspect(token: Option<&str>) -> Jsonb {
    let _sensitive = redact::sensitive();
    let token = token.unwrap_or("");
    Jsonb(Spi::connect(|spi| token::introspect(spi, token, None)))
}

/// RFC 8414 authorization server metadata for this database (requires pg_oauth.issuer).
#[pg_extern(stable, parallel_restricted, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_metadata() -> Jsonb {
    Jsonb(metadata::metadata(Transport::PostgRest).or_raise())
}

/// SMART App Launch 2.x configuration for this database (requires pg_oauth.issuer).
#[pg_extern(stable, parallel_restricted, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_smart_configuration() -> Jsonb {
    Jsonb(metadata::smart_configuration(Transport::PostgRest).or_raise())
}

/// The RFC 7517 JWK Set of the public keys that sign, will sign, or signed tokens that
/// are still valid. Private parts and HS256 keys are never included.
#[pg_extern(stable, parallel_safe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_jwks() -> Jsonb {
    Jsonb(Spi::connect(ring::jwks).or_raise())
}
