//! The token endpoint (RFC 6749 §4.4, §6), for the SQL functions and the HTTP layer:
//! authenticate the client, grant (grant/), and issue the access token — a session row,
//! opaque or a JWT signed by a published key — and the refresh token.

use std::rc::Rc;

use pgrx::spi::SpiClient;
use serde_json::{json, Map, Value};

use crate::authn::credentials;
use crate::authn::dpop::{self, Checked, Presented};
use crate::authn::login_state;
use crate::config::gucs::{self, Transport};
use crate::crypto::alg::JwtAlg;
use crate::crypto::certificate::Certificate;
use crate::error::{OAuthError, Result};
use crate::flow::deferred;
use crate::flow::exchange::{self, ExchangeRequest, Exchanged};
use crate::grant::claims::Claims;
use crate::grant::granted::Granted;
use crate::grant::{client_credentials, refresh_token};
use crate::jose::jwt;
use crate::jose::keys;
use crate::jose::ring::{self, Unpublished};
use crate::pg::backend;
use crate::pg::cache;
use crate::pg::shmem::login::LoginToken;
use crate::pg::shmem::stats;
use crate::store::client::{self, Client, TokenFormat};
use crate::store::refresh::{self, FamilyId};
use crate::store::session::{self, Exchange, NewSession};

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
    /// The request's DPoP proof (RFC 9449 §5: the `DPoP` header, or auth_token's `dpop`).
    pub dpop: Option<&'a str>,
    /// The request's TLS client certificate (RFC 8705): client authentication by it, and
    /// the certificate a client's tokens are bound to.
    pub certificate: Option<&'a Certificate>,
    /// RFC 8693 token exchange parameters.
    pub exchange: ExchangeRequest<'a>,
    /// The server the request came through, which says the URL a DPoP proof must name;
    /// None (SQL) accepts the token endpoint of either.
    pub transport: Option<Transport>,
}

/// The token endpoint's URLs a DPoP proof may name for a request over `transport`.
fn token_endpoints(transport: Option<Transport>) -> Vec<String> {
    let transports = match transport {
        Some(t) => vec![t],
        None => vec![Transport::PostgRest, Transport::Listener],
    };
    transports
        .into_iter()
        .filter_map(|t| gucs::endpoint(t, "token"))
        .collect()
}

/// The request's DPoP proof, checked against it (not yet spent).
fn dpop_proof(req: &TokenRequest<'_>, now_us: i64) -> Result<Option<Checked>> {
    let Some(proof) = req.dpop else {
        return Ok(None);
    };
    let urls = token_endpoints(req.transport);
    if urls.is_empty() {
        return Err(OAuthError::no_issuer("accept DPoP proofs"));
    }
    let presented = Presented {
        proof,
        method: "POST",
        urls: &urls,
    };
    dpop::check(&presented, None, now_us).map(Some)
}

#[derive(Clone, Copy)]
enum Grant {
    ClientCredentials,
    RefreshToken,
    TokenExchange,
}

fn grant_of(grant_type: Option<&str>) -> Result<Grant> {
    match grant_type {
        Some("client_credentials") => Ok(Grant::ClientCredentials),
        Some("refresh_token") => Ok(Grant::RefreshToken),
        Some(exchange::GRANT_TYPE) => Ok(Grant::TokenExchange),
        Some("") | None => Err(OAuthError::InvalidRequest(
            "the grant_type parameter is required".into(),
        )),
        Some(other) => Err(OAuthError::UnsupportedGrantType(format!(
            "grant type {} is not supported",
            crate::error::quoted(other)
        ))),
    }
}

/// Handle a token request; returns the RFC 6749 §5.1 response body (RFC 8693 §2.2.1 for an
/// exchange).
pub fn issue(spi: &mut SpiClient<'_>, req: &TokenRequest<'_>) -> Result<Value> {
    cache::accept_invalidations();
    backend::require_primary("issue tokens")?;
    let grant = grant_of(req.grant_type)?;
    let now_us = backend::now_micros();
    let proof = dpop_proof(req, now_us)?;
    let credentials = credentials::credentials_from(
        req.client_id,
        req.client_secret,
        req.other_readings,
        req.client_assertion_type,
        req.client_assertion,
        req.certificate,
    )?;
    let client = credentials::authenticate(spi, credentials)?;
    let client = client::hold_active(spi, client)?;
    spend_proof(&client, proof.as_ref(), now_us)?;
    let jkt = proof.as_ref().map(|p| p.jkt.as_str());
    let x5t = bound_certificate(&client, req.certificate)?;
    let binding = Binding {
        jkt,
        x5t: x5t.as_deref(),
    };
    let (granted, exchanged) = match grant {
        Grant::ClientCredentials => (
            client_credentials::grant(spi, &client, req.scope, req.audience, now_us)?,
            None,
        ),
        Grant::RefreshToken => (
            refresh_token::grant(spi, &client, req.refresh_token, req.scope, req.audience)?,
            None,
        ),
        Grant::TokenExchange => {
            let (granted, exchanged) =
                exchange::grant(spi, &client, &req.exchange, req.scope, req.audience)?;
            (granted, Some(exchanged))
        }
    };
    let issuance = Issuance {
        issued_at_us: now_us,
        binding,
        exchanged: exchanged.as_ref(),
    };
    let family = granted.refresh.as_ref().map(|r| r.family);
    let (access, expires_at_us) = issue_access_token(spi, &client, &granted, family, &issuance)?;
    count_issued(&client, grant);
    let mut body = Map::new();
    body.insert("access_token".into(), Value::String(access));
    if let Some(exchanged) = &exchanged {
        body.insert(
            "issued_token_type".into(),
            json!(exchanged.issued_token_type),
        );
    }
    let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
    body.insert("token_type".into(), Value::String(token_type.into()));
    body.insert(
        "expires_in".into(),
        json!((expires_at_us - now_us) / 1_000_000),
    );
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

/// One more token of `grant`, in the client's format (and, for a JWT, algorithm).
fn count_issued(client: &Client, grant: Grant) {
    let grant = match grant {
        Grant::ClientCredentials => "client_credentials",
        Grant::RefreshToken => "refresh_token",
        Grant::TokenExchange => "token_exchange",
    };
    let jwt = client.token_format == TokenFormat::Jwt;
    stats::count(
        "tokens_issued",
        &[grant, if jwt { "jwt" } else { "opaque" }],
    );
    if jwt {
        let alg = ring::alg_for(client.jwt_alg.as_deref());
        stats::count("tokens_signed", &[alg.as_str()]);
    }
}

/// Spend the request's DPoP proof, now that the client authenticated; a client whose tokens
/// must be DPoP-bound (RFC 9449 §5.2) must have sent one.
fn spend_proof(client: &Client, proof: Option<&Checked>, now_us: i64) -> Result<()> {
    match proof {
        Some(proof) => dpop::spend(proof, now_us),
        None if client.dpop_bound_access_tokens => Err(OAuthError::InvalidDpopProof(
            "this client's tokens must be DPoP-bound: send a DPoP proof (RFC 9449)".into(),
        )),
        None => Ok(()),
    }
}

/// The thumbprint of the certificate `client`'s tokens are bound to (RFC 8705 §3), when
/// it asks for certificate-bound tokens: it must then present one.
fn bound_certificate(client: &Client, certificate: Option<&Certificate>) -> Result<Option<String>> {
    if !client.tls_client_certificate_bound_access_tokens {
        return Ok(None);
    }
    match certificate {
        Some(certificate) => Ok(Some(certificate.thumbprint())),
        None => Err(OAuthError::InvalidRequest(
            "this client's tokens are bound to its TLS client certificate: connect with it \
             (RFC 8705)"
                .into(),
        )),
    }
}

/// What an access token is bound to: a DPoP key (RFC 9449), a client certificate (RFC 8705).
#[derive(Clone, Copy)]
struct Binding<'a> {
    jkt: Option<&'a str>,
    x5t: Option<&'a str>,
}

/// When an access token is issued, what binds it, and what it was exchanged from.
struct Issuance<'a> {
    issued_at_us: i64,
    binding: Binding<'a>,
    exchanged: Option<&'a Exchanged>,
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

/// Create the session and the access token for it; returns the token and its expiry (Unix
/// microseconds). An exchanged token acts as its subject's role and lives no longer than it.
fn issue_access_token(
    spi: &mut SpiClient<'_>,
    client: &Client,
    granted: &Granted,
    family: Option<FamilyId>,
    issuance: &Issuance<'_>,
) -> Result<(String, i64)> {
    let (issued_at_us, binding, exchanged) =
        (issuance.issued_at_us, issuance.binding, issuance.exchanged);
    let mut expires_at_us = issued_at_us + i64::from(client.access_token_expiration) * 1_000_000;
    let role = match exchanged {
        Some(e) => {
            expires_at_us = expires_at_us.min(e.expires_at_us);
            e.role.as_deref()
        }
        None => policy_role(client)?,
    };
    let exchange = exchanged.map(|e| Exchange {
        subject: &e.subject,
        act: e.act.as_ref(),
        from: e.from,
    });
    let id = crate::store::new_id();
    let access_token = match client.token_format {
        TokenFormat::Opaque => session::opaque_token(&id),
        TokenFormat::Jwt => {
            let issuer =
                gucs::issuer().ok_or_else(|| OAuthError::no_issuer("issue JWT access tokens"))?;
            let key = signing_key(spi, ring::alg_for(client.jwt_alg.as_deref()))?;
            let claims = Claims {
                issuer: Some(&issuer),
                client_id: &client.id,
                scope: &granted.scopes,
                audience: &granted.audience,
                role,
                id: &id,
                issued_at: issued_at_us / 1_000_000,
                expires_at: expires_at_us / 1_000_000,
                jkt: binding.jkt,
                x5t: binding.x5t,
                subject: exchange.map(|e| e.subject),
                act: exchange.and_then(|e| e.act),
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
            scope: &granted.scopes,
            audience: &granted.audience,
            role,
            issued_at_us,
            expires_at_us,
            family_id: family,
            jkt: binding.jkt,
            x5t: binding.x5t,
            exchange,
        },
    )?;
    if let Some(role) = role {
        login_state::token_issued(
            &LoginToken {
                id,
                client_id: client.id.clone(),
                role: role.to_owned(),
                expires_at_us,
            },
            client.token_format == TokenFormat::Jwt,
            &granted.audience,
            binding.jkt.is_some() || binding.x5t.is_some(),
        );
    }
    Ok((access_token, expires_at_us))
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
    match ring::active(spi, alg) {
        Ok(key) => return Ok(key),
        Err(Unpublished::Failed(err)) => return Err(err),
        Err(Unpublished::NoKey) => {}
    }
    if !deferred::publish_keys(alg.as_str()) {
        return Err(unpublished());
    }
    match ring::active(spi, alg) {
        Ok(key) => Ok(key),
        Err(Unpublished::Failed(err)) => Err(err),
        Err(Unpublished::NoKey) => Err(unpublished()),
    }
}
