//! The OAuth HTTP endpoints, transport-neutral: token (RFC 6749), revocation (RFC 7009),
//! introspection (RFC 7662), the JWK Set and the metadata documents. One handler, two
//! transports: PostgREST calls it through the `oauth.http_*` functions (api/postgrest),
//! pg_oauth's own listener directly (api/listener). A [`Request`] carries what the
//! transport knows (method, headers, socket peer); a [`Reply`] the status, headers and body.
//!
//! Protocol errors are answers, not SQL errors: the RFC error body and status, and the
//! transaction commits. Each request's own writes run in a subtransaction, so a failed
//! request leaves nothing half-done behind.

use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use serde_json::{json, Map, Value};

pub mod basic;

use basic::basic_credentials;

use crate::authn::attempts;
use crate::authn::credentials;
use crate::error::{OAuthError, Result};
use crate::flow::metadata;
use crate::flow::token::{self, TokenRequest};
use crate::jose::keys;
use crate::store::client::Client;
use crate::store::deferred;

/// Headers every token-endpoint response carries (RFC 6749 §5.1).
const NO_STORE: [(&str, &str); 2] = [("Cache-Control", "no-store"), ("Pragma", "no-cache")];

/// What an HTTP request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Revoke,
    Introspect,
    Jwks,
    Metadata,
    SmartConfiguration,
}

pub use crate::config::gucs::Transport;

impl Endpoint {
    /// The methods it answers: POST for the token, revocation and introspection endpoints
    /// (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1), GET (and HEAD) for the documents.
    pub fn allowed(self) -> &'static str {
        match self {
            Endpoint::Token | Endpoint::Revoke | Endpoint::Introspect => "POST",
            Endpoint::Jwks | Endpoint::Metadata | Endpoint::SmartConfiguration => "GET, HEAD",
        }
    }

    pub fn allows(self, method: &str) -> bool {
        self.allowed()
            .split(", ")
            .any(|allowed| allowed.eq_ignore_ascii_case(method))
    }
}

/// What the transport knows of a request.
pub struct Request {
    pub transport: Transport,
    /// `GET`, `POST`, ...; None when unknown (a SQL caller outside PostgREST).
    pub method: Option<String>,
    /// Header names in lower case, as PostgREST gives them in `request.headers`.
    pub headers: Map<String, Value>,
    /// The socket peer, when the transport is pg_oauth's own listener; None under PostgREST,
    /// whose connection is the proxy's. Only a transport sets it, never a SQL caller.
    pub peer: Option<String>,
}

/// An answer: status, headers, JSON body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Reply {
    /// An RFC 6749 §5.2 error answer (the one builder of error bodies, for every transport
    /// and for the listener's own refusals): never cacheable, `Retry-After` when given.
    pub fn error(status: u16, error: &str, description: &str, retry_after: Option<i64>) -> Reply {
        let mut reply = Reply::new(
            status,
            &NO_STORE,
            json!({ "error": error, "error_description": description }),
        );
        if let Some(secs) = retry_after {
            reply.headers.push(("Retry-After".into(), secs.to_string()));
        }
        reply
    }

    /// 405 for a method `endpoint` does not answer, with `Allow` (RFC 9110 §15.5.6).
    pub fn wrong_method(endpoint: Endpoint, method: &str) -> Reply {
        let allowed = endpoint.allowed();
        let first = allowed.split(", ").next().unwrap_or(allowed);
        let mut reply = Reply::error(
            405,
            "invalid_request",
            &format!("use {first}, not {method}"),
            None,
        );
        reply.headers.push(("Allow".into(), allowed.into()));
        reply
    }

    fn new(status: u16, headers: &[(&str, &str)], body: Value) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body,
        }
    }
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    /// Run one endpoint request with its source (for the audit trail and lockouts): the
    /// listener's socket peer, else the configured proxy header, else the connection's.
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        deferred::clear_deferred();
        let source = self
            .peer
            .clone()
            .or_else(|| attempts::postgrest_source(&Value::Object(self.headers.clone())));
        attempts::request(source, f)
    }
}

/// Answer `endpoint` for `req` with the body's parameters (POST endpoints) or none (GET).
pub fn handle(endpoint: Endpoint, req: &Request, params: &Params) -> Result<Reply> {
    // PostgREST runs a function for any method it is called with (RFC 6749 §3.2 wants POST
    // at the token endpoint); the listener refuses before reading the body, with this answer.
    if let Some(method) = req.method.as_deref().filter(|m| !endpoint.allows(m)) {
        return Ok(Reply::wrong_method(endpoint, method));
    }
    match endpoint {
        Endpoint::Token => token_endpoint(req, params),
        Endpoint::Revoke => revocation_endpoint(req, params),
        Endpoint::Introspect => introspection_endpoint(req, params),
        // The JWK Set is cacheable for a minute: new keys are published one rotation ahead
        // of use, so a short cache never misses a signing key.
        Endpoint::Jwks => public_document(req.transport, 60, || Spi::connect(keys::jwks)),
        Endpoint::Metadata => {
            public_document(req.transport, 300, || metadata::metadata(req.transport))
        }
        Endpoint::SmartConfiguration => public_document(req.transport, 300, || {
            metadata::smart_configuration(req.transport)
        }),
    }
}

/// A public GET document, cacheable for `max_age` seconds; or the error that keeps it from
/// being served (a missing setting), stated as the token endpoint states it.
fn public_document(
    transport: Transport,
    max_age: u32,
    body: impl FnOnce() -> Result<Value>,
) -> Result<Reply> {
    let cache_control = format!("public, max-age={max_age}");
    Ok(match body() {
        Ok(body) => Reply::new(200, &[("Cache-Control", cache_control.as_str())], body),
        Err(err) => Reply::error(
            status_of(&err, false, transport),
            err.code(),
            err.description(),
            err.retry_after_secs(),
        ),
    })
}

/// A request's parameters (form fields or JSON members) as strings.
pub struct Params(Map<String, Value>);

impl Params {
    /// The members of a JSON object (PostgREST's arguments, the listener's parsed body);
    /// anything else has none.
    pub fn new(body: Option<Value>) -> Params {
        match body {
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
fn client_auth(req: &Request, params: &Params) -> std::result::Result<ClientAuth, Failure> {
    let basic = basic_credentials(req.header("authorization"))
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
    req: &Request,
    params: &Params,
) -> std::result::Result<Rc<Client>, Failure> {
    let auth = client_auth(req, params)?;
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

/// The HTTP status of an OAuth error over `transport` (`basic`: the client tried HTTP
/// Basic, which makes a failed client authentication a 401 with `WWW-Authenticate`).
pub fn status_of(err: &OAuthError, basic: bool, transport: Transport) -> u16 {
    match err {
        OAuthError::InvalidClient(_)
        | OAuthError::AuthenticationFailed { .. }
        | OAuthError::LockedOut { .. }
            if basic =>
        {
            401
        }
        OAuthError::ServerError(_) => 500,
        OAuthError::TemporarilyUnavailable { .. } | OAuthError::ReadOnly(_) => match transport {
            Transport::PostgRest => 429,
            Transport::Listener => 503,
        },
        _ => 400,
    }
}

/// Answer with `outcome`: 200 and its body, or the RFC 6749 §5.2 error body with its status
/// (`status_of`). Token endpoint responses are never cacheable.
fn answer(transport: Transport, outcome: std::result::Result<Value, Failure>) -> Result<Reply> {
    Spi::connect_mut(|spi| match outcome {
        Ok(body) => Ok(Reply::new(200, &NO_STORE, body)),
        Err(Failure { err, basic }) => {
            // The request's writes were rolled back with its subtransaction; what must
            // survive its failure (a failed authentication, a reused refresh token's
            // revocation) is written now, and commits with this answer.
            let err = deferred::apply_deferred(spi, err)?;
            let status = status_of(&err, basic, transport);
            let mut reply = Reply::error(
                status,
                err.code(),
                err.description(),
                err.retry_after_secs(),
            );
            if status == 401 {
                reply.headers.push((
                    "WWW-Authenticate".into(),
                    "Basic realm=\"pg_oauth\", charset=\"UTF-8\"".into(),
                ));
            }
            Ok(reply)
        }
    })
}

fn token_endpoint(req: &Request, params: &Params) -> Result<Reply> {
    req.run(|| {
        answer(
            req.transport,
            atomically(|| {
                Spi::connect_mut(|spi| {
                    let auth = client_auth(req, params)?;
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
            }),
        )
    })
}

fn revocation_endpoint(req: &Request, params: &Params) -> Result<Reply> {
    req.run(|| {
        answer(
            req.transport,
            atomically(|| {
                Spi::connect_mut(|spi| {
                    let client = authenticated_client(spi, req, params)?;
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
            }),
        )
    })
}

fn introspection_endpoint(req: &Request, params: &Params) -> Result<Reply> {
    // A subtransaction: authenticating by assertion records its jti.
    req.run(|| {
        answer(
            req.transport,
            atomically(|| {
                Spi::connect_mut(|spi| {
                    let client = authenticated_client(spi, req, params)?;
                    Ok(token::introspect(
                        spi,
                        required(params, "token")?,
                        Some(&client),
                    ))
                })
            }),
        )
    })
}
