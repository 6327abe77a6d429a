//! The token endpoint (RFC 6749 §4.4, §6), token verification, revocation (RFC 7009) and
//! introspection (RFC 7662), shared by the SQL functions and the HTTP layer.

use std::rc::Rc;

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use serde_json::{json, Map, Value};

use crate::authn::credentials;
use crate::config::gucs;
use crate::crypto::alg::JwtAlg;
use crate::error::{OAuthError, Result};
use crate::grant::claims::{self, Claims};
use crate::grant::{audience, scope};
use crate::jose::jwt::{self, Expiry};
use crate::jose::keys::{self, Unpublished};
use crate::pg::backend;
use crate::pg::cache;
use crate::pg::db;
use crate::store::client::{self, Client, TokenFormat};
use crate::store::deferred;
use crate::store::refresh::{self, FamilyId};
use crate::store::session::{self, NewSession, Probe, SessionId};

/// The parameters of a token request, named as the RFC 6749 form fields.
#[derive(Debug, Default, Clone)]
pub struct TokenRequest<'a> {
    pub grant_type: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    /// Further (client id, secret) readings of an HTTP Basic header (api/postgrest).
    pub other_readings: &'a [(String, String)],
    pub scope: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub refresh_token: Option<&'a str>,
    pub client_assertion_type: Option<&'a str>,
    pub client_assertion: Option<&'a str>,
}

enum Grant {
    ClientCredentials,
    RefreshToken,
}

fn grant_of(grant_type: Option<&str>) -> Result<Grant> {
    match grant_type {
        Some("client_credentials") => Ok(Grant::ClientCredentials),
        Some("refresh_token") => Ok(Grant::RefreshToken),
        Some("") | None => Err(OAuthError::InvalidRequest(
            "the grant_type parameter is required".into(),
        )),
        Some(other) => Err(OAuthError::UnsupportedGrantType(format!(
            "grant type {} is not supported",
            crate::error::quoted(other)
        ))),
    }
}

/// What a token request is granted: the access token's scopes and audience, and the
/// refresh token's family and grant, if it gets one (RFC 6749 §6: a new refresh token has
/// exactly the scope of the one it replaces, whatever the access token narrowed to).
struct Granted {
    scopes: Vec<String>,
    audience: Vec<String>,
    refresh: Option<RefreshGrant>,
}

struct RefreshGrant {
    family: FamilyId,
    scope: Vec<String>,
    audience: Vec<String>,
}

/// Handle a token request; returns the RFC 6749 §5.1 response body.
pub fn issue(spi: &mut SpiClient<'_>, req: &TokenRequest<'_>) -> Result<Value> {
    cache::accept_invalidations();
    backend::require_primary("issue tokens")?;
    let grant = grant_of(req.grant_type)?;
    let credentials = credentials::credentials_from(
        req.client_id,
        req.client_secret,
        req.other_readings,
        req.client_assertion_type,
        req.client_assertion,
    )?;
    let client = credentials::authenticate(spi, credentials)?;
    let client = client::hold_active(spi, client)?;
    let now_us = backend::now_micros();
    let granted = match grant {
        Grant::ClientCredentials => grant_client_credentials(spi, &client, req, now_us)?,
        Grant::RefreshToken => grant_refresh(spi, &client, req)?,
    };
    let family = granted.refresh.as_ref().map(|r| r.family);
    let access = issue_access_token(
        spi,
        &client,
        &granted.scopes,
        &granted.audience,
        family,
        now_us,
    )?;
    let mut body = Map::new();
    body.insert("access_token".into(), Value::String(access));
    body.insert("token_type".into(), Value::String("Bearer".into()));
    body.insert("expires_in".into(), json!(client.access_token_expiration));
    if !granted.scopes.is_empty() {
        body.insert("scope".into(), Value::String(granted.scopes.join(" ")));
    }
    if let Some(r) = granted.refresh {
        let refresh = refresh::issue(
            spi,
            &r.family,
            &client.id,
            &r.scope,
            &r.audience,
            client.refresh_token_expiration,
            now_us,
        )?;
        body.insert("refresh_token".into(), Value::String(refresh));
    }
    Ok(Value::Object(body))
}

/// RFC 6749 §4.4: the requested scopes and audiences the client may have (all of them
/// when none are requested), and a new refresh family if the client gets refresh tokens.
fn grant_client_credentials(
    spi: &mut SpiClient<'_>,
    client: &Client,
    req: &TokenRequest<'_>,
    now_us: i64,
) -> Result<Granted> {
    if !client.has_grant("client_credentials") {
        return Err(OAuthError::UnauthorizedClient(
            "the client_credentials grant is not enabled for this client".into(),
        ));
    }
    let scopes = scope::grant(
        spi,
        &client.scope,
        client.smart,
        gucs::SMART_EXPAND_WILDCARDS.get(),
        scope::parse(req.scope)?,
    )?;
    let audience = audience::resolve(client, audience::parse(req.audience)?)?;
    let refresh = if client.refresh_enabled() {
        Some(RefreshGrant {
            family: refresh::new_family(spi, &client.id, now_us)?,
            scope: scopes.clone(),
            audience: audience.clone(),
        })
    } else {
        None
    };
    Ok(Granted {
        scopes,
        audience,
        refresh,
    })
}

/// RFC 6749 §6: redeem the refresh token (rotating it), then narrow — never widen — its
/// grant to what is requested and what the client is still allowed.
fn grant_refresh(
    spi: &mut SpiClient<'_>,
    client: &Client,
    req: &TokenRequest<'_>,
) -> Result<Granted> {
    if !client.refresh_enabled() {
        return Err(OAuthError::UnauthorizedClient(
            "refresh tokens are not enabled for this client".into(),
        ));
    }
    let token = req.refresh_token.filter(|t| !t.is_empty()).ok_or_else(|| {
        OAuthError::InvalidRequest("the refresh_token parameter is required".into())
    })?;
    let grant = refresh::redeem(spi, &client.id, token.trim())?;
    let scopes = narrow(&grant.scope, scope::parse(req.scope)?, |s| {
        OAuthError::InvalidScope(format!(
            "scope {} was not granted to this refresh token",
            crate::error::quoted(s)
        ))
    })?;
    if let Some(lost) = scopes.iter().find(|s| !scope::is_allowed(&client.scope, s)) {
        return Err(OAuthError::InvalidScope(format!(
            "scope {} is no longer allowed for this client",
            crate::error::quoted(lost)
        )));
    }
    let audience = narrow(&grant.audience, audience::parse(req.audience)?, |a| {
        OAuthError::InvalidTarget(format!(
            "audience {} was not granted to this refresh token",
            crate::error::quoted(a)
        ))
    })?;
    let allowed = audience::allowed(client);
    if let Some(lost) = audience.iter().find(|a| !allowed.contains(a)) {
        return Err(OAuthError::InvalidTarget(format!(
            "audience {} is no longer allowed for this client",
            crate::error::quoted(lost)
        )));
    }
    Ok(Granted {
        scopes,
        audience,
        refresh: Some(RefreshGrant {
            family: grant.family,
            scope: grant.scope,
            audience: grant.audience,
        }),
    })
}

/// `requested` (or all of `granted` when nothing is requested), each of which must be in
/// `granted`.
fn narrow(
    granted: &[String],
    requested: Option<Vec<String>>,
    not_granted: impl Fn(&str) -> OAuthError,
) -> Result<Vec<String>> {
    match requested {
        None => Ok(granted.to_vec()),
        Some(requested) => {
            if let Some(extra) = requested.iter().find(|r| !granted.contains(r)) {
                return Err(not_granted(extra));
            }
            Ok(requested)
        }
    }
}

/// The role a client's tokens carry, from its policy: checked again at every issuance (the
/// role may have gained privileges since the policy was written; see cache.rs).
fn policy_role(client: &Client) -> Result<Option<&str>> {
    match (&client.role, &client.role_problem) {
        (None, _) => Ok(None),
        (Some(role), None) => Ok(Some(role)),
        (Some(_), Some(problem)) => Err(OAuthError::UnauthorizedClient(format!(
            "this client's policy role may not be used: {problem}"
        ))),
    }
}

/// Create the session and the access token for it.
fn issue_access_token(
    spi: &mut SpiClient<'_>,
    client: &Client,
    scopes: &[String],
    audience: &[String],
    family: Option<FamilyId>,
    issued_at_us: i64,
) -> Result<String> {
    let role = policy_role(client)?;
    let expires_at_us = issued_at_us + i64::from(client.access_token_expiration) * 1_000_000;
    let id = crate::store::new_id();
    let access_token = match client.token_format {
        TokenFormat::Opaque => session::opaque_token(&id),
        TokenFormat::Jwt => {
            let issuer =
                gucs::issuer().ok_or_else(|| OAuthError::no_issuer("issue JWT access tokens"))?;
            let key = signing_key(spi, keys::alg_for(client.jwt_alg.as_deref()))?;
            let claims = Claims {
                issuer: Some(&issuer),
                client_id: &client.id,
                scope: scopes,
                audience,
                role,
                id: &id,
                issued_at: issued_at_us / 1_000_000,
                expires_at: expires_at_us / 1_000_000,
            };
            jwt::sign(&key, Value::Object(claims.build()).to_string().as_bytes())?
        }
    };
    session::insert(
        spi,
        &NewSession {
            id,
            client_id: &client.id,
            token: &access_token,
            format: client.token_format,
            scope: scopes,
            audience,
            role,
            issued_at_us,
            expires_at_us,
            family_id: family,
        },
    )?;
    Ok(access_token)
}

/// The key that signs a token with `alg`. With no published key for `alg` at all (a new
/// default algorithm, keys deleted, clients loaded with COPY), one is made and committed in a
/// transaction of its own first, so no token is signed by a key verifiers cannot fetch.
fn signing_key(spi: &mut SpiClient<'_>, alg: JwtAlg) -> Result<Rc<keys::Key>> {
    let unpublished = || {
        OAuthError::ServerError(format!(
            "there is no published {0} signing key and none could be made now; \
             run SELECT oauth.ensure_signing_keys('{0}')",
            alg.as_str()
        ))
    };
    match keys::active(spi, alg) {
        Ok(key) => return Ok(key),
        Err(Unpublished::Failed(err)) => return Err(err),
        Err(Unpublished::NoKey) => {}
    }
    if !deferred::publish_keys(alg.as_str()) {
        return Err(unpublished());
    }
    match keys::active(spi, alg) {
        Ok(key) => Ok(key),
        Err(Unpublished::Failed(err)) => Err(err),
        Err(Unpublished::NoKey) => Err(unpublished()),
    }
}

/// Verify an access token (opaque or JWT); `audience`, if given, must be in its `aud`.
/// Returns its claims. A JWT is verified without touching the database when its key is
/// cached, and its revocation check probes the session index directly (no SQL runs), so
/// the calling function needs no `SET search_path`; every fallback that runs SQL does so
/// under a safe search_path (db::with_safe_search_path).
pub fn verify(token: &str, audience: Option<&str>) -> Result<Map<String, Value>> {
    cache::accept_invalidations();
    let token = token.trim();
    if token.is_empty() {
        return Err(OAuthError::InvalidToken("the access token is empty".into()));
    }
    let now_us = backend::now_micros();
    let now = now_us / 1_000_000;
    let (claims, audience_ok) = if token.contains('.') {
        let leeway = i64::from(gucs::LEEWAY.get());
        let verified = gucs::with_issuer(|issuer| {
            jwt::verify(token, issuer, Expiry::Enforce { now_us, leeway }, |kid| {
                db::with_safe_search_path(|| Spi::connect(|spi| keys::by_kid(spi, kid)))
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
            Spi::connect(|spi| session::verify_opaque(spi, token, now))
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
            expires_at: session.expires_at,
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
            jwt::verify(token, issuer, Expiry::Ignore, |kid| keys::by_kid(spi, kid))
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
    match &found.kind {
        TokenKind::Access(id) => session::revoke(spi, id, reason),
        TokenKind::Refresh(family) => refresh::revoke_family(spi, family, reason),
    }
}

/// RFC 7662 introspection: the token's claims with `active: true`, or `{"active": false}`
/// for anything that is not a live token. Never raises for a bad token. With a `caller`
/// (the HTTP endpoint's authenticated client), only that client's own tokens are shown,
/// unless it may introspect any (`oauth.client.introspect_any`): RFC 7662 §2.2 answers
/// `active: false` for tokens the caller may not introspect.
pub fn introspect(spi: &SpiClient<'_>, token: &str, caller: Option<&Client>) -> Value {
    let inactive = || json!({ "active": false });
    let token = token.trim();
    if token.is_empty() {
        return inactive();
    }
    let allowed = |client_id: &str| caller.is_none_or(|c| c.introspect_any || c.id == client_id);
    if let Ok(mut claims) = verify(token, None) {
        if !allowed(
            claims
                .get("client_id")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ) {
            return inactive();
        }
        claims.insert("active".into(), Value::Bool(true));
        claims.insert("token_type".into(), Value::String("Bearer".into()));
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
