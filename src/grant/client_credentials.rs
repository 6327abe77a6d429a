//! The client credentials grant (RFC 6749 §4.4).

use pgrx::spi::SpiClient;

use super::granted::{Granted, RefreshGrant};
use super::{audience, scope};
use crate::config::gucs;
use crate::error::{OAuthError, Result};
use crate::store::client::Client;
use crate::store::refresh;

/// RFC 6749 §4.4: the requested scopes and audiences the client may have (all of them
/// when none are requested), and a new refresh family if the client gets refresh tokens.
pub fn grant(
    spi: &mut SpiClient<'_>,
    client: &Client,
    scope: Option<&str>,
    audience: Option<&str>,
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
        scope::parse(scope)?,
    )?;
    let audience = audience::resolve(client, audience::parse(audience)?)?;
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
