//! The PostgREST transport: the `oauth.http_*` functions PostgREST exposes (the request from
//! PostgREST's `request.method`/`request.headers`, the answer through its
//! `response.status`/`response.headers`; the handler is http/handler.rs) and PostgREST's
//! pre-config hook. The pre-request hook's checks are gate.rs; claim helpers for row-level
//! security, rls.rs.

use pgrx::prelude::*;
use serde_json::{json, Map, Value};

use crate::authn::mtls;
use crate::authn::source::{self, Edge};
use crate::error::{OrRaise, Result};
use crate::http::handler;
use crate::http::message::{Endpoint, Params, Request, Transport};
use crate::jose::ring;
use crate::pg::backend;
use crate::pg::db::Statement;
use crate::pg::jsonb::Jsonb;
use crate::pg::redact;
use pgrx::pg_sys::BuiltinOid::TEXTOID;

static SET_RESPONSE: Statement = Statement::new(
    "SELECT pg_catalog.set_config('response.status', $1, true),
            pg_catalog.set_config('response.headers', $2, true)",
    &[TEXTOID, TEXTOID],
);

/// The request as PostgREST describes it; the source is PostgREST's connection (or the
/// configured proxy header), never a socket peer.
pub(super) fn postgrest_request() -> Request {
    let headers = match backend::request_setting(c"request.headers")
        .and_then(|r| serde_json::from_str::<Value>(&r).ok())
    {
        Some(Value::Object(headers)) => headers,
        _ => Map::new(),
    };
    Request {
        transport: Transport::PostgRest,
        method: backend::request_setting(c"request.method"),
        source: source::resolve(Edge::PostgRest, &Value::Object(headers.clone())),
        client_certificate: mtls::presented(Edge::PostgRest, None, &headers),
        headers,
    }
}

/// Answer a PostgREST request to `endpoint`: status and headers into PostgREST's response
/// settings, the body as the function's result.
fn serve(endpoint: Endpoint, params: Option<pgrx::JsonB>) -> Jsonb {
    let _sensitive = redact::sensitive();
    let answered = handler::handle(
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

/// GET /rpc/protected_resource: RFC 9728 metadata of the API (serve it at
/// `/.well-known/oauth-protected-resource`, as the nginx recipe does).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_protected_resource() -> Jsonb {
    serve(Endpoint::ProtectedResource, None)
}

/// PostgREST `db-pre-config`: hand PostgREST the keys it verifies JWTs with, as its
/// `jwt-secret`: the public JWK Set, plus HS256 secrets as `oct` keys when HS256 is in use
/// (a shared secret must be shared with the verifier). Grant it to the authenticator only.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn postgrest_pre_config() {
    Spi::connect(|spi| -> Result<()> {
        let jwks = ring::jwks_for_postgrest(spi)?;
        spi.select(
            "SELECT pg_catalog.set_config('pgrst.jwt_secret', $1, true)",
            None,
            &[jwks.to_string().as_str().into()],
        )?;
        Ok(())
    })
    .or_raise()
}
