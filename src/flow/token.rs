//! What an access token is worth: verification (for `auth_verify`, PostgREST's hook and
//! row-level security), revocation (RFC 7009) and introspection (RFC 7662), for the SQL
//! functions and the HTTP layer. Issuing one is issue.rs.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use serde_json::{json, Map, Value};

use crate::authn::dpop::{self, Presented};
use crate::config::gucs;
use crate::crypto::certificate::Certificate;
use crate::error::{OAuthError, Result};
use crate::grant::claims::{self, Claims};
use crate::jose::jwt::{self, Expiry};
use crate::jose::ring;
use crate::pg::backend;
use crate::pg::cache;
use crate::pg::db;
use crate::pg::shmem::stats;
use crate::store::client::Client;
use crate::store::refresh::{self, FamilyId};
use crate::store::session::{self, Probe, SessionId};
use aws_lc_rs::constant_time;

/// Verify an access token (opaque or JWT) as a resource server does: `audience`, if given,
/// must be in its `aud`; a DPoP-bound token must come with a proof by its key, for the
/// request `dpop` describes (RFC 9449 §7.1); a certificate-bound one over TLS with its
/// certificate (RFC 8705 §3). Returns its claims. See `claims_of`.
pub fn verify(
    token: &str,
    audience: Option<&str>,
    held: Possession<'_>,
) -> Result<Map<String, Value>> {
    let verified = claims_of(token, audience)
        .and_then(|claims| check_binding(&claims, token.trim(), held).map(|()| claims));
    match &verified {
        Ok(_) => stats::count("verifications", &["accepted"]),
        Err(err) => {
            stats::count("verifications", &["refused"]);
            stats::count("refusals", &["verify", err.code()]);
        }
    }
    verified
}

/// What comes with a token besides itself: a DPoP proof and the request it is for, the
/// request's TLS client certificate.
#[derive(Clone, Copy, Default)]
pub struct Possession<'a> {
    pub dpop: Option<&'a Presented<'a>>,
    pub certificate: Option<&'a Certificate>,
}

/// A token is used by its holder only: a DPoP-bound one with a fresh proof by the key it is
/// bound to (spent here, once for the whole cluster), a certificate-bound one with its
/// certificate. A proof that comes with a bearer token is checked all the same.
pub fn check_binding(claims: &Map<String, Value>, token: &str, held: Possession<'_>) -> Result<()> {
    if let Some(x5t) = claims::bound_x5t(claims) {
        let Some(certificate) = held.certificate else {
            return Err(OAuthError::InvalidToken(
                "the access token is certificate-bound: present it over TLS with its client \
                 certificate"
                    .into(),
            ));
        };
        let thumbprint = certificate.thumbprint();
        if constant_time::verify_slices_are_equal(thumbprint.as_bytes(), x5t.as_bytes()).is_err() {
            return Err(OAuthError::InvalidToken(
                "the access token is bound to another client certificate".into(),
            ));
        }
    }
    let bound = claims::bound_jkt(claims);
    let Some(presented) = held.dpop else {
        return match bound {
            None => Ok(()),
            Some(_) => Err(OAuthError::InvalidToken(
                "the access token is DPoP-bound: present it with a DPoP proof by its key".into(),
            )),
        };
    };
    let now_us = backend::now_micros();
    let checked = dpop::check(presented, Some(token), now_us)?;
    if bound.is_some_and(|jkt| jkt != checked.jkt) {
        return Err(OAuthError::InvalidDpopProof(
            "the DPoP proof is not signed by the key the access token is bound to".into(),
        ));
    }
    dpop::spend(&checked, now_us)
}

/// The claims of a live access token of ours (opaque or JWT), whoever presents it;
/// `audience`, if given, must be in its `aud`. A JWT is verified without touching the database when its key is
/// cached, and its revocation check probes the session index directly (no SQL runs), so
/// the calling function needs no `SET search_path`; every fallback that runs SQL does so
/// under a safe search_path (db::with_safe_search_path).
pub fn claims_of(token: &str, audience: Option<&str>) -> Result<Map<String, Value>> {
    cache::accept_invalidations();
    let token = token.trim();
    if token.is_empty() {
        return Err(OAuthError::InvalidToken("the access token is empty".into()));
    }
    let now_us = backend::now_micros();
    let (claims, audience_ok) = if token.contains('.') {
        let leeway = i64::from(gucs::LEEWAY.get());
        let verified = gucs::with_issuer(|issuer| {
            jwt::verify(token, issuer, Expiry::Enforce { now_us, leeway }, |kid| {
                db::with_safe_search_path(|| Spi::connect(|spi| ring::by_kid(spi, kid)))
            })
        })?;
        if gucs::VERIFY_REVOCATION.get() {
            let id = parse_jti(verified.jti().unwrap_or_default())?;
            session::probe(&id, token)?.check()?;
        }
        let audience_ok = audience.is_none_or(|a| verified.audience_contains(a));
        (verified.claims, audience_ok)
    } else {
        let session = db::with_safe_search_path(|| {
            Spi::connect(|spi| session::verify_opaque(spi, token, now_us))
        })?;
        let audience_ok = audience.is_none_or(|a| session.audience.iter().any(|s| s == a));
        let issuer = gucs::issuer();
        let claims = Claims {
            issuer: issuer.as_deref(),
            client_id: &session.client_id,
            scope: &session.scope,
            audience: &session.audience,
            role: session.role.as_deref(),
            id: &session.id,
            issued_at: session.issued_at,
            expires_at: session.expires_at_us.div_euclid(1_000_000),
            jkt: session.jkt.as_deref(),
            x5t: session.x5t.as_deref(),
            subject: session.subject.as_deref(),
            act: session.act.as_ref(),
        };
        (claims.build(), audience_ok)
    };
    if !audience_ok {
        return Err(OAuthError::InvalidToken(format!(
            "the access token is not intended for audience {}",
            crate::error::quoted(audience.unwrap_or_default())
        )));
    }
    Ok(claims)
}

fn parse_jti(jti: &str) -> Result<SessionId> {
    uuid::Uuid::parse_str(jti)
        .map(|u| *u.as_bytes())
        .map_err(|_| OAuthError::InvalidToken("JWT jti is not a session id".into()))
}

/// A token of ours, found whatever its state (live, expired or revoked) after its
/// signature or hash checked out.
pub struct FoundToken {
    pub client_id: String,
    kind: TokenKind,
}

enum TokenKind {
    Access(SessionId),
    Refresh(FamilyId),
}

pub fn find(spi: &SpiClient<'_>, token: &str) -> Result<Option<FoundToken>> {
    cache::accept_invalidations();
    let token = token.trim();
    if token.contains('.') {
        let verified = gucs::with_issuer(|issuer| {
            jwt::verify(token, issuer, Expiry::Ignore, |kid| ring::by_kid(spi, kid))
        });
        let Ok(verified) = verified else {
            return Ok(None);
        };
        let (Ok(id), Some(client_id)) = (
            parse_jti(verified.jti().unwrap_or_default()),
            verified.client_id().map(str::to_owned),
        ) else {
            return Ok(None);
        };
        // Only the very token the session was issued for.
        if session::probe(&id, token)? == Probe::Unknown {
            return Ok(None);
        }
        return Ok(Some(FoundToken {
            client_id,
            kind: TokenKind::Access(id),
        }));
    }
    if let Some(found) = session::find_opaque(spi, token)? {
        return Ok(Some(FoundToken {
            client_id: found.client_id,
            kind: TokenKind::Access(found.id),
        }));
    }
    Ok(refresh::find(spi, token)?.map(|r| FoundToken {
        client_id: r.client_id,
        kind: TokenKind::Refresh(r.family),
    }))
}

/// Revoke a found token: an access token closes its session; a refresh token revokes its
/// family and so the access tokens issued from it. Returns whether it was live.
pub fn revoke_found(spi: &mut SpiClient<'_>, found: &FoundToken, reason: &str) -> Result<bool> {
    backend::require_primary("revoke tokens")?;
    let live = match &found.kind {
        TokenKind::Access(id) => session::revoke(spi, id, reason)?,
        TokenKind::Refresh(family) => refresh::revoke_family(spi, family, reason)?,
    };
    if live {
        stats::count("revocations", &[]);
    }
    Ok(live)
}

/// RFC 7662 introspection: the token's claims with `active: true`, or `{"active": false}`
/// for anything that is not a live token. Never raises for a bad token. With a `caller`
/// (the HTTP endpoint's authenticated client), only that client's own tokens are shown,
/// unless it may introspect any (`oauth.client.introspect_any`): RFC 7662 §2.2 answers
/// `active: false` for tokens the caller may not introspect.
pub fn introspect(spi: &SpiClient<'_>, token: &str, caller: Option<&Client>) -> Value {
    stats::count("introspections", &[]);
    let inactive = || json!({ "active": false });
    let token = token.trim();
    if token.is_empty() {
        return inactive();
    }
    let allowed = |client_id: &str| caller.is_none_or(|c| c.introspect_any || c.id == client_id);
    if let Ok(mut claims) = claims_of(token, None) {
        if !allowed(
            claims
                .get("client_id")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ) {
            return inactive();
        }
        // RFC 9449 §6.2: a bound token's `cnf` is among its claims, and its type is DPoP.
        let token_type = match claims::bound_jkt(&claims) {
            Some(_) => "DPoP",
            None => "Bearer",
        };
        claims.insert("active".into(), Value::Bool(true));
        claims.insert("token_type".into(), Value::String(token_type.into()));
        return Value::Object(claims);
    }
    match refresh::find(spi, token) {
        Ok(Some(r)) if !r.expired && !r.used && !r.family_revoked && allowed(&r.client_id) => {
            json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": r.client_id,
                "sub": r.client_id,
                "scope": r.scope.join(" "),
                "aud": claims::audience_claim(&r.audience),
                "iat": r.issued_at,
                "exp": r.expires_at,
            })
        }
        _ => inactive(),
    }
}
