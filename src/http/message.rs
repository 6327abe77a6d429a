//! What the OAuth HTTP endpoints take and give, whatever carries them: the endpoint asked
//! for, the request as its transport describes it, its parameters, and the answer.

use serde_json::{json, Map, Value};

pub use crate::config::gucs::Transport;
use crate::crypto::certificate::Certificate;
use crate::error::{OAuthError, Result};

/// Headers every token-endpoint response carries (RFC 6749 §5.1).
pub const NO_STORE: [(&str, &str); 2] = [("Cache-Control", "no-store"), ("Pragma", "no-cache")];

/// What an HTTP request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Revoke,
    Introspect,
    Jwks,
    Metadata,
    SmartConfiguration,
    /// RFC 9728 protected resource metadata (of the API, not of this server).
    ProtectedResource,
    /// The counters in Prometheus' text format (the listener only).
    Metrics,
    /// The console's API (the listener only).
    Console(crate::flow::console::Action),
}

impl Endpoint {
    /// The methods it answers: POST for the token, revocation and introspection endpoints
    /// (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1), GET (and HEAD) for the documents.
    pub fn allowed(self) -> &'static str {
        match self {
            Endpoint::Token | Endpoint::Revoke | Endpoint::Introspect | Endpoint::Console(_) => {
                "POST"
            }
            Endpoint::Jwks
            | Endpoint::Metadata
            | Endpoint::SmartConfiguration
            | Endpoint::ProtectedResource
            | Endpoint::Metrics => "GET, HEAD",
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
    /// Where it comes from, as its transport's edge decided (authn/source.rs): the listener's
    /// peer or the address a trusted proxy forwards; under PostgREST the forwarded address
    /// when the session is PostgREST's own, else None: the database connection's address.
    pub source: Option<String>,
    /// The client's TLS certificate (RFC 8705): the listener's handshake, or what a trusted
    /// proxy forwards (authn/mtls.rs).
    pub client_certificate: Option<Certificate>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }
}

/// An answer: status, headers, JSON body (or, for /metrics, text).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// A plain-text body instead of `body` (Prometheus' exposition format).
    pub text: Option<String>,
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

    pub fn new(status: u16, headers: &[(&str, &str)], body: Value) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body,
            text: None,
        }
    }
}

/// A request's parameters (form fields or JSON members) as strings.
pub struct Params(Map<String, Value>);

impl Params {
    /// All of them (the console's arguments).
    pub fn members(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The members of a JSON object (PostgREST's arguments, the listener's parsed body);
    /// anything else has none.
    pub fn new(body: Option<Value>) -> Params {
        match body {
            Some(Value::Object(map)) => Params(map),
            _ => Params(Map::new()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A list parameter as one space-separated value: a string (already space-separated,
    /// the only way a form can carry several: PostgREST keeps the last of repeated fields)
    /// or, in a JSON body, an array of strings. Anything else in the array is refused.
    pub fn list(&self, name: &str) -> Result<Option<String>> {
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
