//! The OAuth HTTP endpoints, transport-neutral: token (RFC 6749), revocation (RFC 7009),
//! introspection (RFC 7662), the JWK Set and the metadata documents. One handler, two
//! transports: PostgREST calls it through the `oauth.http_*` functions (api/postgrest),
//! pg_oauth's own listener directly (http/listener). A [`Request`] carries what the
//! transport knows (method, headers, socket peer); a [`Reply`] the status, headers and body.
//!
//! Protocol errors are answers, not SQL errors: the RFC error body and status, and the
//! transaction commits. Each request's own writes run in a subtransaction, so a failed
//! request leaves nothing half-done behind.

use std::rc::Rc;

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use serde_json::{json, Value};

use super::basic::basic_credentials;
use super::message::{Endpoint, Params, Reply, Request, Transport, NO_STORE};
use crate::authn::attempts;
use crate::authn::credentials;
use crate::error::{OAuthError, Result};
use crate::flow::console;
use crate::flow::deferred;
use crate::flow::exchange::ExchangeRequest;
use crate::flow::issue::{self, TokenRequest};
use crate::flow::metadata;
use crate::flow::token;
use crate::jose::ring;
use crate::pg::shmem::stats;
use crate::pg::subxact::atomically;
use crate::store::client::Client;
use crate::store::deferred::clear_deferred;

/// Run one endpoint request counted by its source (the audit trail, lockouts).
fn run<R>(req: &Request, f: impl FnOnce() -> R) -> R {
    clear_deferred();
    attempts::request(req.source.clone(), f)
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
        Endpoint::Jwks => public_document(req.transport, 60, || Spi::connect(ring::jwks)),
        Endpoint::Metadata => {
            public_document(req.transport, 300, || metadata::metadata(req.transport))
        }
        Endpoint::SmartConfiguration => public_document(req.transport, 300, || {
            metadata::smart_configuration(req.transport)
        }),
        Endpoint::ProtectedResource => {
            public_document(req.transport, 300, metadata::protected_resource)
        }
        Endpoint::Metrics => Ok(super::metrics::endpoint(req)),
        Endpoint::Console(action) => Ok(console_endpoint(action, req, params)),
    }
}

/// The console's API: the request's Bearer token signs in (RFC 6750 §2.1), the action runs
/// as flow/console.rs says. 401 without a valid token, 403 for what it may not do.
fn console_endpoint(action: console::Action, req: &Request, params: &Params) -> Reply {
    let token = req
        .header("authorization")
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let outcome = match token {
        Some(token) => console::serve(token, action, params.members()),
        None => Err(OAuthError::InvalidToken(
            "sign in: send a pg_oauth access token as Authorization: Bearer <token>".into(),
        )),
    };
    match outcome {
        Ok(body) => Reply::new(200, &NO_STORE, body),
        Err(err) => {
            let status = match err {
                OAuthError::InvalidToken(_) => 401,
                _ => status_of(&err, false, req.transport),
            };
            let mut reply = Reply::error(
                status,
                err.code(),
                err.description(),
                err.retry_after_secs(),
            );
            if status == 401 {
                reply.headers.push((
                    "WWW-Authenticate".into(),
                    "Bearer realm=\"pg_oauth console\", error=\"invalid_token\"".into(),
                ));
            }
            reply
        }
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
        req.client_certificate.as_ref(),
    )
    .map_err(fail)?;
    credentials::authenticate(spi, credentials).map_err(fail)
}

fn required<'p>(params: &'p Params, name: &str) -> Result<&'p str> {
    params
        .get(name)
        .ok_or_else(|| OAuthError::InvalidRequest(format!("the {name} parameter is required")))
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
        OAuthError::AccessDenied(_) => 403,
        OAuthError::TemporarilyUnavailable { .. } | OAuthError::ReadOnly(_) => match transport {
            Transport::PostgRest => 429,
            Transport::Listener => 503,
        },
        _ => 400,
    }
}

/// Answer with `outcome`: 200 and its body, or the RFC 6749 §5.2 error body with its status
/// (`status_of`). Token endpoint responses are never cacheable.
fn answer(
    endpoint: &str,
    transport: Transport,
    outcome: std::result::Result<Value, Failure>,
) -> Result<Reply> {
    Spi::connect_mut(|spi| match outcome {
        Ok(body) => Ok(Reply::new(200, &NO_STORE, body)),
        Err(Failure { err, basic }) => {
            stats::count("refusals", &[endpoint, err.code()]);
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
            // RFC 9449 §8: the nonce the next proof must carry.
            if let Some(nonce) = err.dpop_nonce() {
                reply.headers.push(("DPoP-Nonce".into(), nonce.into()));
            }
            Ok(reply)
        }
    })
}

fn token_endpoint(req: &Request, params: &Params) -> Result<Reply> {
    run(req, || {
        answer(
            "token",
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
                        dpop: dpop_header(req)?,
                        certificate: req.client_certificate.as_ref(),
                        exchange: ExchangeRequest {
                            subject_token: params.get("subject_token"),
                            subject_token_type: params.get("subject_token_type"),
                            actor_token: params.get("actor_token"),
                            actor_token_type: params.get("actor_token_type"),
                            requested_token_type: params.get("requested_token_type"),
                        },
                        transport: Some(req.transport),
                    };
                    issue::issue(spi, &req).map_err(|err| Failure {
                        err,
                        basic: auth.basic,
                    })
                })
            }),
        )
    })
}

/// The request's DPoP proof (RFC 9449 §4.1): one `DPoP` header, at most.
fn dpop_header(req: &Request) -> Result<Option<&str>> {
    match req.headers.get("dpop") {
        None => Ok(None),
        Some(Value::String(proof)) => Ok(Some(proof.as_str())),
        Some(_) => Err(OAuthError::InvalidDpopProof(
            "the request carries more than one DPoP header".into(),
        )),
    }
}

/// An endpoint for an authenticated client (revocation, introspection): `f` runs with the
/// client, in a subtransaction (authenticating by assertion records its jti), and its
/// outcome is the answer.
fn for_a_client(
    endpoint: &str,
    req: &Request,
    params: &Params,
    f: impl FnOnce(&mut SpiClient<'_>, &Client) -> std::result::Result<Value, Failure>,
) -> Result<Reply> {
    run(req, || {
        answer(
            endpoint,
            req.transport,
            atomically(|| {
                Spi::connect_mut(|spi| {
                    let client = authenticated_client(spi, req, params)?;
                    f(spi, &client)
                })
            }),
        )
    })
}

fn revocation_endpoint(req: &Request, params: &Params) -> Result<Reply> {
    for_a_client("revoke", req, params, |spi, client| {
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
}

fn introspection_endpoint(req: &Request, params: &Params) -> Result<Reply> {
    for_a_client("introspect", req, params, |spi, client| {
        Ok(token::introspect(
            spi,
            required(params, "token")?,
            Some(client),
        ))
    })
}
