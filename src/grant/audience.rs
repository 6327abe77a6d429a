//! Audiences (RFC 8707 `resource`, and the `audience` parameter): what a request names,
//! what a client may have, and what a token gets.

use crate::config::gucs;
use crate::error::{quoted, OAuthError, Result};
use crate::store::client::Client;

/// Split a requested audience list (space-delimited; over HTTP also a JSON array, joined
/// before it gets here) by the same rule as scopes (`list::parse_list`). Values are checked
/// against what the client may have, so no syntax rule applies here.
pub fn parse(audience: Option<&str>) -> Result<Option<Vec<String>>> {
    super::list::parse_list(audience, "audience", OAuthError::InvalidTarget, |_| Ok(()))
}

/// The audiences a token gets: those requested (each must be allowed), else every audience
/// the client may have.
pub fn resolve(client: &Client, requested: Option<Vec<String>>) -> Result<Vec<String>> {
    let allowed = allowed(client);
    let Some(requested) = requested else {
        return Ok(allowed);
    };
    if let Some(aud) = requested.iter().find(|aud| !allowed.contains(aud)) {
        return Err(OAuthError::InvalidTarget(format!(
            "audience {} is not allowed for this client",
            quoted(aud)
        )));
    }
    Ok(requested)
}

/// The audiences a client may have: its own list, else `pg_oauth.default_audience`, else
/// the issuer.
pub fn allowed(client: &Client) -> Vec<String> {
    if client.audience.is_empty() {
        gucs::string(&gucs::DEFAULT_AUDIENCE)
            .or_else(gucs::issuer)
            .into_iter()
            .collect()
    } else {
        client.audience.clone()
    }
}
