//! The PostgREST surface: token, revocation and introspection endpoints that speak
//! RFC 6749/7009/7662 over HTTP (status codes, headers and error bodies set through
//! PostgREST's `response.status`/`response.headers`), PostgREST's pre-config and
//! pre-request hooks; claim helpers for row-level security are rls.rs.
//!
//! The endpoint functions never raise for a protocol error: they answer with the RFC
//! error body and status, and the transaction commits. Each request's own writes run in
//! a subtransaction, so a failed request leaves nothing half-done behind.

use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use serde_json::{json, Map, Value};

pub mod basic;

use super::rls::request_claims;
use basic::basic_credentials;

use crate::authn::attempts;
use crate::authn::credentials;
use crate::error::{OAuthError, OrRaise, Result};
use crate::flow::metadata;
use crate::flow::token::{self, TokenRequest};

use crate::jose::keys;
use crate::pg::db::Statement;
use crate::pg::jsonb::Jsonb;
use crate::pg::redact;
use crate::store::client::Client;
use crate::store::deferred;
use crate::store::session;
use pgrx::pg_sys::BuiltinOid::TEXTOID;

/// Headers every token-endpoint response carries (RFC 6749 §5.1).
const NO_STORE: [(&str, &str); 2] = [("Cache-Control", "no-store"), ("Pragma", "no-cache")];

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

/// The request's headers, as PostgREST passes them (names in lower case).
fn request_headers() -> Value {
    request_setting(c"request.headers")
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or(Value::Null)
}

/// The request's Authorization header.
fn authorization() -> Option<String> {
    request_headers()
        .get("authorization")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Run one endpoint request: its source address (for the audit trail and lockout) comes
/// from the configured proxy header, else from PostgREST's connection.
fn in_request<R>(f: impl FnOnce() -> R) -> R {
    deferred::clear_deferred();
    let source = PEER
        .with_borrow(Clone::clone)
        .or_else(|| attempts::source_from_headers(&request_headers()));
    attempts::request(source, f)
}

thread_local! {
    /// The socket peer of a request pg_oauth's own listener received (api/listener); set only
    /// by that worker's main thread, never from SQL, so no caller can choose its source.
    static PEER: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` (an endpoint called by the listener) with `peer` as the request's source.
pub fn with_peer<R>(peer: String, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            PEER.set(None);
        }
    }
    PEER.set(Some(peer));
    let _reset = Reset;
    f()
}

/// RFC 6749 §3.2: the token endpoint takes POST only (PostgREST would run a GET too).
fn require_post() -> std::result::Result<(), Failure> {
    match request_setting(c"request.method").as_deref() {
        Some(method) if !method.eq_ignore_ascii_case("POST") => {
            Err(OAuthError::InvalidRequest(format!("use POST, not {method}")).into())
        }
        _ => Ok(()),
    }
}

fn respond(spi: &SpiClient<'_>, status: u16, headers: &[(&str, &str)]) -> Result<()> {
    let headers: Vec<Value> = headers.iter().map(|(k, v)| json!({ *k: *v })).collect();
    SET_RESPONSE.query(
        spi,
        &[
            status.to_string().as_str().into(),
            Value::Array(headers).to_string().as_str().into(),
        ],
    )?;
    Ok(())
}

/// A request's parameters (form fields or JSON members) as strings.
struct Params(Map<String, Value>);

impl Params {
    fn new(body: Option<pgrx::JsonB>) -> Params {
        match body.map(|b| b.0) {
            Some(Value::Object(map)) => Params(map),
            _ => Params(Map::new()),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A list parameter as one space-separated value: a string (already space-separated,
    /// the only way a form can carry several: PostgREST keeps the last of repeated fields)
    /// or, in a JSON body, an array of strings. Anything else in the array is refused.
    fn list(&self, name: &str) -> Result<Option<String>> {
        match self.0.get(name) {
            Some(Value::Array(items)) => {
                let items: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                let items = items.ok_or_else(|| {
                    OAuthError::InvalidRequest(format!("{name} must be a list of strings"))
                })?;
                Ok(Some(items.join(" ")).filter(|v| !v.trim().is_empty()))
            }
            _ => Ok(self.get(name).map(str::to_owned)),
        }
    }
}

/// How the client authenticated in this request.
struct ClientAuth {
    client_id: Option<String>,
    client_secret: Option<String>,
    /// Further readings of an HTTP Basic header (see `basic_credentials`).
    other_readings: Vec<(String, String)>,
    basic: bool,
}

/// A failed request: the error, and whether the client tried HTTP Basic (which makes an
/// `invalid_client` a 401 with `WWW-Authenticate`).
struct Failure {
    err: OAuthError,
    basic: bool,
}

impl From<OAuthError> for Failure {
    fn from(err: OAuthError) -> Self {
        Failure { err, basic: false }
    }
}

/// RFC 6749 §2.3: HTTP Basic, client_id/client_secret in the body, or a client assertion
/// (RFC 7521) — exactly one.
fn client_auth(params: &Params) -> std::result::Result<ClientAuth, Failure> {
    require_post()?;
    let basic = basic_credentials(authorization().as_deref())
        .map_err(|err| Failure { err, basic: true })?;
    match basic {
        Some(mut readings) => {
            if params.get("client_secret").is_some() || params.get("client_assertion").is_some() {
                return Err(OAuthError::InvalidRequest(
                    "use one client authentication method: HTTP Basic, client_secret or client_assertion"
                        .into(),
                )
                .into());
            }
            if let Some(body_id) = params.get("client_id") {
                // The body names the client: only the readings with that id remain.
                readings.retain(|(id, _)| id == body_id);
                if readings.is_empty() {
                    return Err(OAuthError::InvalidRequest(
                        "client_id in the body differs from the one in HTTP Basic".into(),
                    )
                    .into());
                }
            }
            let (id, secret) = readings.remove(0);
            Ok(ClientAuth {
                client_id: Some(id),
                client_secret: Some(secret),
                other_readings: readings,
                basic: true,
            })
        }
        None => Ok(ClientAuth {
            client_id: params.get("client_id").map(str::to_owned),
            client_secret: params.get("client_secret").map(str::to_owned),
            other_readings: Vec::new(),
            basic: false,
        }),
    }
}

/// Authenticate the calling client (revocation and introspection).
fn authenticated_client(
    spi: &mut SpiClient<'_>,
    params: &Params,
) -> std::result::Result<Rc<Client>, Failure> {
    let auth = client_auth(params)?;
    let fail = |err| Failure {
        err,
        basic: auth.basic,
    };
    let credentials = credentials::credentials_from(
        auth.client_id.as_deref(),
        auth.client_secret.as_deref(),
        &auth.other_readings,
        params.get("client_assertion_type"),
        params.get("client_assertion"),
    )
    .map_err(fail)?;
    credentials::authenticate(spi, credentials).map_err(fail)
}

fn required<'p>(params: &'p Params, name: &str) -> Result<&'p str> {
    params
        .get(name)
        .ok_or_else(|| OAuthError::InvalidRequest(format!("the {name} parameter is required")))
}

/// Run `f` in a subtransaction: its writes stay only if it succeeds.
fn atomically<T, E>(f: impl FnOnce() -> std::result::Result<T, E>) -> std::result::Result<T, E> {
    // SAFETY: the sequence PL/pgSQL uses for an exception block. A PostgreSQL ERROR raised
    // inside propagates and aborts the whole transaction, subtransaction included.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let result = f();
        if result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}

/// Answer with `outcome`: 200 and its body, or the RFC 6749 §5.2 error body with 400
/// (401 + WWW-Authenticate when the client tried HTTP Basic and failed; 500 for server
/// errors). Token endpoint responses are never cacheable.
fn answer(outcome: std::result::Result<Value, Failure>) -> Result<Value> {
    Spi::connect_mut(|spi| match outcome {
        Ok(body) => {
            respond(spi, 200, &NO_STORE)?;
            Ok(body)
        }
        Err(Failure { err, basic }) => {
            // The request's writes were rolled back with its subtransaction; what must
            // survive its failure (a failed authentication, a reused refresh token's
            // revocation) is written now, and commits with this answer.
            deferred::apply_deferred(spi)?;
            let status = match err {
                OAuthError::InvalidClient(_)
                | OAuthError::AuthenticationFailed { .. }
                | OAuthError::LockedOut { .. }
                    if basic =>
                {
                    401
                }
                OAuthError::ServerError(_) => 500,
                // Not 503: PostgREST takes any 503 for "database away", restarts its
                // connection worker and prepends its own `Retry-After: 0`.
                OAuthError::TemporarilyUnavailable { .. } => 429,
                _ => 400,
            };
            let mut headers = NO_STORE.to_vec();
            if status == 401 {
                headers.push((
                    "WWW-Authenticate",
                    "Basic realm=\"pg_oauth\", charset=\"UTF-8\"",
                ));
            }
            let retry_after;
            if let OAuthError::LockedOut {
                retry_after_secs, ..
            }
            | OAuthError::TemporarilyUnavailable { retry_after_secs } = err
            {
                retry_after = retry_after_secs.to_string();
                headers.push(("Retry-After", &retry_after));
            }
            respond(spi, status, &headers)?;
            Ok(json!({ "error": err.code(), "error_description": err.description() }))
        }
    })
}

fn token_endpoint(params: &Params) -> Result<Value> {
    in_request(|| {
        answer(atomically(|| {
            Spi::connect_mut(|spi| {
                let auth = client_auth(params)?;
                // RFC 8707 `resource` names the audience too.
                let audience = match params.list("audience")? {
                    Some(audience) => Some(audience),
                    None => params.list("resource")?,
                };
                let req = TokenRequest {
                    grant_type: params.get("grant_type"),
                    client_id: auth.client_id.as_deref(),
                    client_secret: auth.client_secret.as_deref(),
                    other_readings: &auth.other_readings,
                    scope: params.get("scope"),
                    audience: audience.as_deref(),
                    refresh_token: params.get("refresh_token"),
                    client_assertion_type: params.get("client_assertion_type"),
                    client_assertion: params.get("client_assertion"),
                };
                token::issue(spi, &req).map_err(|err| Failure {
                    err,
                    basic: auth.basic,
                })
            })
        }))
    })
}

fn revocation_endpoint(params: &Params) -> Result<Value> {
    in_request(|| {
        answer(atomically(|| {
            Spi::connect_mut(|spi| {
                let client = authenticated_client(spi, params)?;
                // token_type_hint is optional and we look in both places anyway (RFC 7009 §2.1).
                if let Some(found) = token::find(spi, required(params, "token")?)? {
                    if found.client_id != client.id {
                        return Err(OAuthError::UnauthorizedClient(
                            "the token was not issued to this client".into(),
                        )
                        .into());
                    }
                    token::revoke_found(spi, &found, "revoked by the client (RFC 7009)")?;
                }
                Ok(json!({}))
            })
        }))
    })
}

fn introspection_endpoint(params: &Params) -> Result<Value> {
    // A subtransaction: authenticating by assertion records its jti.
    in_request(|| {
        answer(atomically(|| {
            Spi::connect_mut(|spi| {
                let client = authenticated_client(spi, params)?;
                Ok(token::introspect(
                    spi,
                    required(params, "token")?,
                    Some(&client),
                ))
            })
        }))
    })
}

/// POST /rpc/token: RFC 6749 §4.4 and §6 over HTTP. `params` are the form fields or JSON
/// members; client authentication by HTTP Basic or in the body.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_token(params: default!(Option<pgrx::JsonB>, "NULL")) -> Jsonb {
    let _sensitive = redact::sensitive();
    Jsonb(token_endpoint(&Params::new(params)).or_raise())
}

/// POST /rpc/revoke: RFC 7009, for an authenticated client and its own tokens.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_revoke(params: default!(Option<pgrx::JsonB>, "NULL")) -> Jsonb {
    let _sensitive = redact::sensitive();
    Jsonb(revocation_endpoint(&Params::new(params)).or_raise())
}

/// POST /rpc/introspect: RFC 7662, for an authenticated client.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_introspect(params: default!(Option<pgrx::JsonB>, "NULL")) -> Jsonb {
    let _sensitive = redact::sensitive();
    Jsonb(introspection_endpoint(&Params::new(params)).or_raise())
}

/// A public GET document, cacheable for `max_age` seconds.
fn public_document(max_age: u32, body: impl FnOnce(&SpiClient<'_>) -> Result<Value>) -> Jsonb {
    let cache_control = format!("public, max-age={max_age}");
    let body = Spi::connect(|spi| -> Result<Value> {
        respond(spi, 200, &[("Cache-Control", cache_control.as_str())])?;
        body(spi)
    });
    Jsonb(body.or_raise())
}

/// GET /rpc/jwks: the JWK Set, cacheable for a minute (new keys are published one
/// rotation ahead of use, so a short cache never misses a signing key).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_jwks() -> Jsonb {
    public_document(60, keys::jwks)
}

/// GET /rpc/metadata: RFC 8414 authorization server metadata.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_metadata() -> Jsonb {
    public_document(300, |_| metadata::metadata())
}

/// GET /rpc/smart_configuration: SMART App Launch 2.x `.well-known/smart-configuration`.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn http_smart_configuration() -> Jsonb {
    public_document(300, |_| metadata::smart_configuration())
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
    let header = authorization()?;
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}
