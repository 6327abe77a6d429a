//! The PostgREST transport: the `oauth.http_*` functions PostgREST exposes (the request from
//! PostgREST's `request.method`/`request.headers`, the answer through its
//! `response.status`/`response.headers`; the handler is api/http), PostgREST's pre-config
//! and pre-request hooks. Claim helpers for row-level security are rls.rs.

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::{json, Map, Value};

use super::http::{self, Endpoint, Params, Request};
use super::rls::request_claims;

use crate::error::{OrRaise, Result};
use crate::jose::keys;
use crate::pg::db::Statement;
use crate::pg::jsonb::Jsonb;
use crate::pg::redact;
use crate::store::session;
use pgrx::pg_sys::BuiltinOid::TEXTOID;

static SET_RESPONSE: Statement = Statement::new(
    "SELECT pg_catalog.set_config('response.status', $1, true),
            pg_catalog.set_config('response.headers', $2, true)",
    &[TEXTOID, TEXTOID],
);

/// A setting PostgREST sets for the request (`request.headers`, `request.method`, ...).
pub(super) fn request_setting(name: &std::ffi::CStr) -> Option<String> {
    // SAFETY: with missing_ok, GetConfigOptionByName returns NULL or a palloc'd string.
    unsafe {
        let value = pg_sys::GetConfigOptionByName(name.as_ptr(), std::ptr::null_mut(), true);
        (!value.is_null()).then(|| {
            std::ffi::CStr::from_ptr(value)
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// The request as PostgREST describes it; the source is PostgREST's connection (or the
/// configured proxy header), never a socket peer.
fn postgrest_request() -> Request {
    let headers = match request_setting(c"request.headers")
        .and_then(|r| serde_json::from_str::<Value>(&r).ok())
    {
        Some(Value::Object(headers)) => headers,
        _ => Map::new(),
    };
    Request {
        method: request_setting(c"request.method"),
        headers,
        peer: None,
    }
}

/// Answer a PostgREST request to `endpoint`: status and headers into PostgREST's response
/// settings, the body as the function's result.
fn serve(endpoint: Endpoint, params: Option<pgrx::JsonB>) -> Jsonb {
    let _sensitive = redact::sensitive();
    let answered = http::handle(
        endpoint,
        &postgrest_request(),
        &Params::new(params.map(|p| p.0)),
    )
    .and_then(|reply| {
        let headers: Vec<Value> = reply.headers.iter().map(|(k, v)| json!({ k: v })).collect();
        Spi::connect(|spi| -> Result<()> {
            SET_RESPONSE.query(
                spi,
                &[
                    reply.status.to_string().as_str().into(),
                    Value::Array(headers).to_string().as_str().into(),
                ],
            )?;
            Ok(())
        })?;
        Ok(reply.body)
    });
    Jsonb(answered.or_raise())
}

/// POST /rpc/token: RFC 6749 §4.4 and §6 over HTTP. `params` are the form fields or JSON
/// members; client authentication by HTTP Basic or in the body.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_token(params: default!(Option<pgrx::JsonB>, "NULL")) -> Jsonb {
    serve(Endpoint::Token, params)
}

/// POST /rpc/revoke: RFC 7009, for an authenticated client and its own tokens.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_revoke(params: default!(Option<pgrx::JsonB>, "NULL")) -> Jsonb {
    serve(Endpoint::Revoke, params)
}

/// POST /rpc/introspect: RFC 7662, for an authenticated client.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_introspect(params: default!(Option<pgrx::JsonB>, "NULL")) -> Jsonb {
    serve(Endpoint::Introspect, params)
}

/// GET /rpc/jwks: the JWK Set, cacheable for a minute.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_jwks() -> Jsonb {
    serve(Endpoint::Jwks, None)
}

/// GET /rpc/metadata: RFC 8414 authorization server metadata.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_metadata() -> Jsonb {
    serve(Endpoint::Metadata, None)
}

/// GET /rpc/smart_configuration: SMART App Launch 2.x `.well-known/smart-configuration`.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_smart_configuration() -> Jsonb {
    serve(Endpoint::SmartConfiguration, None)
}

/// PostgREST `db-pre-config`: hand PostgREST the keys it verifies JWTs with, as its
/// `jwt-secret`: the public JWK Set, plus HS256 secrets as `oct` keys when HS256 is in use
/// (a shared secret must be shared with the verifier). Grant it to the authenticator only.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn postgrest_pre_config() {
    Spi::connect(|spi| -> Result<()> {
        let jwks = keys::jwks_for_postgrest(spi)?;
        spi.select(
            "SELECT pg_catalog.set_config('pgrst.jwt_secret', $1, true)",
            None,
            &[jwks.to_string().as_str().into()],
        )?;
        Ok(())
    })
    .or_raise()
}

/// Why the bearer token of the current PostgREST request may not be used, or NULL: its
/// session was revoked or deleted, or it is not the token that session was issued for (a
/// JWT minted around a live jti, e.g. with an HS256 secret PostgREST also holds). Checked
/// by `oauth.postgrest_pre_request()`.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn request_token_problem() -> Option<String> {
    let claims = request_claims();
    let jti = claims.get("jti").and_then(Value::as_str)?;
    let Ok(id) = uuid::Uuid::parse_str(jti) else {
        return Some("the access token has no valid jti".into());
    };
    let token = bearer_token().unwrap_or_default();
    crate::pg::cache::accept_invalidations();
    match session::probe(id.as_bytes(), &token).or_raise().check() {
        Ok(()) => None,
        Err(err) => Some(err.description().to_owned()),
    }
}

/// The request's bearer token (RFC 6750 §2.1), as PostgREST verified it.
fn bearer_token() -> Option<String> {
    let request = postgrest_request();
    let header = request.header("authorization")?;
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}
