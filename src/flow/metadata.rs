//! RFC 8414 authorization server metadata.

use serde_json::{json, Value};

use crate::authn::mtls;
use crate::config::gucs::{self, Transport};
use crate::crypto::alg::JwtAlg;
use crate::error::{OAuthError, Result};

/// Client authentication methods at the token, revocation and introspection endpoints.
pub const AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

/// With client certificates on (RFC 8705 §2.1.1): the same, and the two certificate methods.
const AUTH_METHODS_MTLS: [&str; 5] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
];

/// Grant types at the token endpoint.
pub const GRANT_TYPES: [&str; 3] = [
    "client_credentials",
    "refresh_token",
    crate::flow::exchange::GRANT_TYPE,
];

/// The document `transport` serves: its endpoint URLs are the ones that server answers.
pub fn metadata(transport: Transport) -> Result<Value> {
    let issuer = gucs::issuer().ok_or_else(|| OAuthError::no_issuer("publish the metadata"))?;
    let endpoint = |name: &str| gucs::endpoint(transport, name).unwrap_or_default();
    let algs: Vec<&str> = JwtAlg::ALL.iter().map(|a| a.as_str()).collect();
    let assertion_algs = crate::authn::assertion::algorithm_names();
    let dpop_algs = crate::jose::dpop::ALGORITHMS;
    // The endpoints that take a client certificate are the same ones (no
    // mtls_endpoint_aliases, RFC 8705 §5): the listener asks for one, optionally, on every
    // connection, and a proxy forwards it on every request.
    let mtls = mtls::enabled(transport);
    let methods: &[&str] = if mtls {
        &AUTH_METHODS_MTLS
    } else {
        &AUTH_METHODS
    };
    let mut metadata = json!({
        "issuer": issuer,
        "token_endpoint": endpoint("token"),
        "jwks_uri": endpoint("jwks"),
        "revocation_endpoint": endpoint("revoke"),
        "introspection_endpoint": endpoint("introspect"),
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        // Not registered by RFC 8414: the algorithms JWT access tokens may be signed with.
        "access_token_signing_alg_values_supported": algs,
        // RFC 9449 §5.1: the algorithms DPoP proofs may be signed with.
        "dpop_signing_alg_values_supported": dpop_algs,
        // RFC 8705 §3.3.
        "tls_client_certificate_bound_access_tokens": mtls,
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

/// The API the tokens protect: `pg_oauth.api_url`, else the issuer (RFC 9728's resource
/// identifier).
pub fn resource() -> Option<String> {
    gucs::string(&gucs::API_URL)
        .or_else(gucs::issuer)
        .map(|r| r.trim_end_matches('/').to_owned())
}

/// Where the resource's metadata is (RFC 9728 §3.1): the well-known path between the
/// resource identifier's origin and its path.
pub fn resource_metadata_url() -> Option<String> {
    let resource = resource()?;
    let (scheme, rest) = resource.split_once("://")?;
    let (origin, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    Some(format!(
        "{scheme}://{origin}/.well-known/oauth-protected-resource{path}"
    ))
}

/// RFC 9728 protected resource metadata for the API behind PostgREST: which authorization
/// server issues its tokens, how they are presented, and whether they must be DPoP-bound.
pub fn protected_resource() -> Result<Value> {
    let issuer = gucs::issuer()
        .ok_or_else(|| OAuthError::no_issuer("publish the protected resource metadata"))?;
    let mut document = json!({
        "resource": resource().unwrap_or_else(|| issuer.clone()),
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": crate::jose::dpop::ALGORITHMS,
        "dpop_bound_access_tokens_required": gucs::DPOP_REQUIRED.get(),
        // The API reads the client certificate its proxy forwards (gate.rs).
        "tls_client_certificate_bound_access_tokens": mtls::enabled(Transport::PostgRest),
    });
    add_scopes_supported(&mut document);
    Ok(document)
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
