//! The PostgREST transport: the `oauth.http_*` functions PostgREST exposes (the request from
//! PostgREST's `request.method`/`request.headers`, the answer through its
//! `response.status`/`response.headers`; the handler is http/handler.rs), PostgREST's pre-config
//! and pre-request hooks. Claim helpers for row-level security are rls.rs.

use pgrx::prelude::*;
use serde_json::{json, Map, Value};

use crate::authn::dpop::Presented;
use crate::config::gucs;
use crate::flow::token;
use crate::http::handler;
use crate::http::message::{Endpoint, Params, Request, Transport};

use super::rls::request_claims;
use crate::authn::source::{self, Edge};
use crate::error::{OrRaise, Result};
use crate::jose::ring;
use crate::pg::backend;
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

/// The request as PostgREST describes it; the source is PostgREST's connection (or the
/// configured proxy header), never a socket peer.
fn postgrest_request() -> Request {
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

/// Why the bearer token of the current PostgREST request may not be used, or NULL. The claims
/// PostgREST verified (`request.jwt.claims`) are bound to a session of ours through the token
/// the request carries: they must name a session by a string `jti`, that session must have
/// been issued for exactly this token (its SHA-256, so a token minted around a live jti is
/// refused) and be open, and the token's own claims must be the verified ones. A request
/// with no token and no claims is anonymous, which PostgREST's anon role decides. Checked by
/// `oauth.postgrest_pre_request()`.
///
/// The token is read from `request.headers`, which keeps the last of repeated Authorization
/// headers while PostgREST verifies the first: requiring the two to carry the same claims
/// closes that gap (a second header cannot lend its session to the first's claims).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn request_token_problem() -> Option<String> {
    let claims = request_claims();
    let token = bearer_token();
    let anonymous = claims.keys().all(|k| k == "role");
    let token = match token {
        None if anonymous => return None,
        None => return Some("the request carries no bearer token for its claims".into()),
        Some(token) => token,
    };
    let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
        return Some("the access token has no valid jti".into());
    };
    let Ok(id) = uuid::Uuid::parse_str(jti) else {
        return Some("the access token has no valid jti".into());
    };
    crate::pg::cache::accept_invalidations();
    if let Err(err) = session::probe(id.as_bytes(), &token).or_raise().check() {
        return Some(err.description().to_owned());
    }
    if !carries_claims(&token, &claims) {
        return Some(session::UNKNOWN.to_owned());
    }
    dpop_problem(&token, &claims)
}

/// A DPoP-bound token (RFC 9449) needs the request's `DPoP` header to hold a fresh proof by
/// its key for this request: its method and public URL (`pg_oauth.api_url`, or the issuer,
/// followed by PostgREST's `request.path`).
fn dpop_problem(token: &str, claims: &Map<String, Value>) -> Option<String> {
    let request = postgrest_request();
    let proof = request.header("dpop");
    if proof.is_none() && crate::grant::claims::bound_jkt(claims).is_none() {
        return None;
    }
    let Some(base) = gucs::string(&gucs::API_URL).or_else(gucs::issuer) else {
        return Some("a DPoP proof cannot be checked here: set pg_oauth.api_url".into());
    };
    let path = backend::request_setting(c"request.path").unwrap_or_default();
    let urls = [format!("{}{path}", base.trim_end_matches('/'))];
    let presented = proof.map(|proof| Presented {
        proof,
        method: request.method.as_deref().unwrap_or(""),
        urls: &urls,
    });
    token::check_binding(claims, token, presented.as_ref())
        .err()
        .map(|err| err.description().to_owned())
}

/// Whether `token` (a JWS) carries exactly `verified` as its claims (numbers compared by
/// value: PostgREST may write 1.7e9 where the token has 1700000000).
fn carries_claims(token: &str, verified: &Map<String, Value>) -> bool {
    use base64::Engine;
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok());
    match payload {
        Some(Value::Object(carried)) => {
            same_json(&Value::Object(carried), &Value::Object(verified.clone()))
        }
        _ => false,
    }
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The request's bearer token (RFC 6750 §2.1), as `request.headers` has it.
fn bearer_token() -> Option<String> {
    let request = postgrest_request();
    let header = request.header("authorization")?;
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}
