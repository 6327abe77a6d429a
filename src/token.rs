//! The token endpoint logic (RFC 6749 §4.4, §5) and token verification and revocation,
//! shared by the SQL functions and the HTTP layer.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use serde_json::{json, Map, Value};

use crate::client::{self, Client, TokenFormat};
use crate::db;
use crate::error::{OAuthError, OrRaise, Result};
use crate::gucs;
use crate::scope;
use crate::session::{self, NewSession};

/// The parameters of a token request, named as the RFC 6749 form fields.
#[derive(Debug, Default, Clone)]
pub struct TokenRequest<'a> {
    pub grant_type: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub audience: Option<&'a str>,
}

enum Grant {
    ClientCredentials,
}

fn grant_of(grant_type: Option<&str>) -> Result<Grant> {
    match grant_type {
        Some("client_credentials") => Ok(Grant::ClientCredentials),
        Some("") | None => Err(OAuthError::InvalidRequest(
            "the grant_type parameter is required".into(),
        )),
        Some(other) => Err(OAuthError::UnsupportedGrantType(format!(
            "grant type {} is not supported",
            scope::quoted(other)
        ))),
    }
}

/// Handle a token request; returns the RFC 6749 §5.1 response body.
pub fn issue(spi: &mut SpiClient<'_>, req: &TokenRequest<'_>) -> Result<Value> {
    let grant = grant_of(req.grant_type)?;
    let credentials = client::credentials_from(req.client_id, req.client_secret)?;
    let client = client::authenticate(spi, credentials)?;
    match grant {
        Grant::ClientCredentials => {
            if !client.grant_types.iter().any(|g| g == "client_credentials") {
                return Err(OAuthError::UnauthorizedClient(
                    "the client_credentials grant is not enabled for this client".into(),
                ));
            }
            let scopes = scope::grant(&client.scope, scope::parse(req.scope)?)?;
            let audience = resolve_audience(&client, req.audience)?;
            let issued = issue_access_token(spi, &client, &scopes, &audience)?;
            Ok(issued.response(&scopes))
        }
    }
}

/// The audiences a token gets: those requested (each must be allowed), else every audience
/// the client may have, else `pg_oauth.default_audience`, else the issuer.
pub fn resolve_audience(client: &Client, requested: Option<&str>) -> Result<Vec<String>> {
    let allowed: Vec<String> = if client.audience.is_empty() {
        gucs::string(&gucs::DEFAULT_AUDIENCE)
            .or_else(gucs::issuer)
            .into_iter()
            .collect()
    } else {
        client.audience.clone()
    };
    let requested: Vec<&str> = requested.unwrap_or("").split_whitespace().collect();
    if requested.is_empty() {
        return Ok(allowed);
    }
    let mut granted: Vec<String> = Vec::with_capacity(requested.len());
    for aud in requested {
        if !allowed.iter().any(|a| a == aud) {
            return Err(OAuthError::InvalidTarget(format!(
                "audience {} is not allowed for this client",
                scope::quoted(aud)
            )));
        }
        if !granted.iter().any(|g| g == aud) {
            granted.push(aud.to_owned());
        }
    }
    Ok(granted)
}

/// The role a client's tokens carry, from its policy.
fn policy_role(client: &Client) -> Result<Option<&str>> {
    match (&client.role, client.role_usable) {
        (None, _) => Ok(None),
        (Some(role), true) => Ok(Some(role)),
        (Some(role), false) => Err(OAuthError::UnauthorizedClient(format!(
            "the role {} in this client's policy does not exist or is a superuser",
            scope::quoted(role)
        ))),
    }
}

pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i32,
}

impl IssuedToken {
    fn response(&self, scopes: &[String]) -> Value {
        let mut body = Map::new();
        body.insert(
            "access_token".into(),
            Value::String(self.access_token.clone()),
        );
        body.insert("token_type".into(), Value::String("Bearer".into()));
        body.insert("expires_in".into(), json!(self.expires_in));
        if !scopes.is_empty() {
            body.insert("scope".into(), Value::String(scopes.join(" ")));
        }
        Value::Object(body)
    }
}

/// Create the session and the access token for it.
pub fn issue_access_token(
    spi: &mut SpiClient<'_>,
    client: &Client,
    scopes: &[String],
    audience: &[String],
) -> Result<IssuedToken> {
    let role = policy_role(client)?;
    let issued_at_us = db::now_micros();
    let expires_at_us = issued_at_us + i64::from(client.access_token_expiration) * 1_000_000;
    let id = session::new_session_id();
    let access_token = match client.token_format {
        TokenFormat::Opaque => session::opaque_token(&id),
        TokenFormat::Jwt => {
            return Err(OAuthError::ServerError(
                "JWT access tokens are not available in this build".into(),
            ))
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
            family_id: None,
        },
    )?;
    Ok(IssuedToken {
        access_token,
        expires_in: client.access_token_expiration,
    })
}

/// Verify an access token and return its claims.
pub fn verify(spi: &SpiClient<'_>, token: &str) -> Result<Value> {
    let token = token.trim();
    if token.is_empty() {
        return Err(OAuthError::InvalidToken("the access token is empty".into()));
    }
    let now = db::now_micros() / 1_000_000;
    let session = session::verify_opaque(spi, token, now)?;
    Ok(session::claims(&session, gucs::issuer()))
}

/// Revoke a token (RFC 7009 semantics: unknown or already revoked tokens are not errors).
/// Returns whether a live token was revoked by this call.
pub fn revoke(spi: &mut SpiClient<'_>, token: &str) -> Result<bool> {
    let token = token.trim();
    let Some(id) = session::opaque_token_id(token) else {
        return Ok(false);
    };
    let Some(found) = session::load(spi, &id)? else {
        return Ok(false);
    };
    if aws_lc_rs::constant_time::verify_slices_are_equal(&found.token_hash, &session::sha256(token))
        .is_err()
    {
        return Ok(false);
    }
    session::revoke(spi, &id)
}

/// The client credentials grant (RFC 6749 §4.4): authenticate the client and return the
/// RFC 6749 §5.1 response as jsonb. Errors are raised with the OAuth error code first in
/// the message and a SQLSTATE per code (see README).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_token(
    grant_type: Option<&str>,
    client_id: default!(Option<&str>, "NULL"),
    client_secret: default!(Option<&str>, "NULL"),
    scope: default!(Option<&str>, "NULL"),
    audience: default!(Option<&str>, "NULL"),
) -> pgrx::JsonB {
    let req = TokenRequest {
        grant_type,
        client_id,
        client_secret,
        scope,
        audience,
    };
    pgrx::JsonB(Spi::connect_mut(|spi| issue(spi, &req)).or_raise())
}

/// Verify an access token; returns its claims or raises invalid_token.
#[pg_extern(stable, parallel_safe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_verify(token: Option<&str>) -> pgrx::JsonB {
    let token = token.unwrap_or("");
    pgrx::JsonB(Spi::connect(|spi| verify(spi, token)).or_raise())
}

/// Revoke an access token (RFC 7009). Idempotent; unknown tokens are not an error.
/// Returns true when this call closed a live session.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_revoke(token: Option<&str>) -> bool {
    let Some(token) = token else { return false };
    Spi::connect_mut(|spi| revoke(spi, token)).or_raise()
}
