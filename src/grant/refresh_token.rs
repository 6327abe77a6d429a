//! The refresh token grant (RFC 6749 §6): a refresh token rotates at every use, and its
//! grant may be narrowed, never widened.

use pgrx::spi::SpiClient;

use super::granted::{Granted, RefreshGrant};
use super::{audience, scope};
use crate::error::{OAuthError, Result};
use crate::store::client::Client;
use crate::store::refresh;

/// RFC 6749 §6: redeem the refresh token (rotating it), then narrow — never widen — its
/// grant to what is requested and what the client is still allowed.
pub fn grant(
    spi: &mut SpiClient<'_>,
    client: &Client,
    refresh_token: Option<&str>,
    scope: Option<&str>,
    audience: Option<&str>,
) -> Result<Granted> {
    if !client.refresh_enabled() {
        return Err(OAuthError::UnauthorizedClient(
            "refresh tokens are not enabled for this client".into(),
        ));
    }
    let token = refresh_token.filter(|t| !t.is_empty()).ok_or_else(|| {
        OAuthError::InvalidRequest("the refresh_token parameter is required".into())
    })?;
    let grant = refresh::redeem(spi, &client.id, token.trim())?;
    let scopes = narrow(&grant.scope, scope::parse(scope)?, |s| {
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
    let audience = narrow(&grant.audience, audience::parse(audience)?, |a| {
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
