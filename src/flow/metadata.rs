//! RFC 8414 authorization server metadata.

use serde_json::{json, Value};

use crate::config::gucs::{self, Transport};
use crate::crypto::alg::JwtAlg;
use crate::error::{OAuthError, Result};

/// Client authentication methods at the token, revocation and introspection endpoints.
pub const AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

/// Grant types at the token endpoint.
pub const GRANT_TYPES: [&str; 2] = ["client_credentials", "refresh_token"];

/// The document `transport` serves: its endpoint URLs are the ones that server answers.
pub fn metadata(transport: Transport) -> Result<Value> {
    let issuer = gucs::issuer().ok_or_else(|| OAuthError::no_issuer("publish the metadata"))?;
    let endpoint = |name: &str| gucs::endpoint(transport, name).unwrap_or_default();
    let algs: Vec<&str> = JwtAlg::ALL.iter().map(|a| a.as_str()).collect();
    let assertion_algs = crate::authn::assertion::algorithm_names();
    let dpop_algs = crate::jose::dpop::ALGORITHMS;
    let mut metadata = json!({
        "issuer": issuer,
        "token_endpoint": endpoint("token"),
        "jwks_uri": endpoint("jwks"),
        "revocation_endpoint": endpoint("revoke"),
        "introspection_endpoint": endpoint("introspect"),
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        // Not registered by RFC 8414: the algorithms JWT access tokens may be signed with.
        "access_token_signing_alg_values_supported": algs,
        // RFC 9449 §5.1: the algorithms DPoP proofs may be signed with.
        "dpop_signing_alg_values_supported": dpop_algs,
    });
    add_scopes_supported(&mut metadata);
    Ok(metadata)
}

/// Opt-in (pg_oauth.scopes_supported): what the DBA chooses to publish, never a dump of
/// every client's scopes to anonymous callers.
fn add_scopes_supported(document: &mut Value) {
    if let Some(scopes) = gucs::string(&gucs::SCOPES_SUPPORTED) {
        let scopes: Vec<&str> = scopes.split_whitespace().collect();
        document["scopes_supported"] = json!(scopes);
    }
}

/// SMART App Launch 2.x `.well-known/smart-configuration`, for SMART Backend Services
/// clients: the token endpoint, how clients authenticate (`private_key_jwt` is SMART's
/// client-confidential-asymmetric, a secret its -symmetric) and the scope syntaxes taken.
/// No `issuer`: SMART publishes one only with `sso-openid-connect`, which this is not.
pub fn smart_configuration(transport: Transport) -> Result<Value> {
    let endpoint = |name: &str| {
        gucs::endpoint(transport, name)
            .ok_or_else(|| OAuthError::no_issuer("publish the SMART configuration"))
    };
    let mut configuration = json!({
        "token_endpoint": endpoint("token")?,
        "jwks_uri": endpoint("jwks")?,
        "revocation_endpoint": endpoint("revoke")?,
        "introspection_endpoint": endpoint("introspect")?,
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": crate::authn::assertion::algorithm_names(),
        "capabilities": [
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            "permission-v1",
            "permission-v2",
        ],
    });
    add_scopes_supported(&mut configuration);
    Ok(configuration)
}
