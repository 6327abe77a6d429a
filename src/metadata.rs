//! RFC 8414 authorization server metadata.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use serde_json::{json, Value};

use crate::db::{Jsonb, Statement};
use crate::error::{OAuthError, OrRaise, Result};
use crate::gucs;
use crate::keys::JwtAlg;

/// Client authentication methods at the token, revocation and introspection endpoints.
pub const AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

static SCOPES: Statement = Statement::new(
    "SELECT coalesce(pg_catalog.array_agg(DISTINCT s ORDER BY s), '{}')
       FROM oauth.client, pg_catalog.unnest(scope) AS s
      WHERE active",
    &[],
);

pub fn metadata(spi: &SpiClient<'_>) -> Result<Value> {
    let issuer = gucs::issuer().ok_or_else(|| {
        OAuthError::ServerError("pg_oauth.issuer must be set to publish metadata".into())
    })?;
    let endpoint = |name: &str| gucs::endpoint(name).unwrap_or_default();
    let scopes: Vec<String> = SCOPES.query(spi, &[])?.first().get(1)?.unwrap_or_default();
    let algs: Vec<&str> = JwtAlg::ALL.iter().map(|a| a.as_str()).collect();
    let assertion_algs = crate::assertion::algorithm_names();
    Ok(json!({
        "issuer": issuer,
        "token_endpoint": endpoint("token"),
        "jwks_uri": endpoint("jwks"),
        "revocation_endpoint": endpoint("revoke"),
        "introspection_endpoint": endpoint("introspect"),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "scopes_supported": scopes,
        // Not registered by RFC 8414: the algorithms JWT access tokens may be signed with.
        "access_token_signing_alg_values_supported": algs,
    }))
}

/// RFC 8414 authorization server metadata for this database (requires pg_oauth.issuer).
#[pg_extern(stable, parallel_restricted, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn auth_metadata() -> Jsonb {
    Jsonb(Spi::connect(metadata).or_raise())
}
