//! One HTTP request on the listener's HTTP thread: routed, bounded, read, handed to the
//! worker's main thread as a [`Job`], and answered with what comes back. Nothing here calls
//! into PostgreSQL; the body is parsed (`params`) by the main thread.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::{oneshot, Semaphore};

use super::limits::Limits;
use crate::http::basic::form_urldecode;
use crate::http::message::{Endpoint, Reply};
use crate::http::{console, page, sandbox};
use crate::pg::shmem::stats::Recorder;

/// One request for the worker's main thread. The body stays raw bytes until that thread
/// takes the job (and parses it, `params`): a queue of parsed JSON could hold far more
/// memory than its bytes.
pub(super) struct Job {
    pub endpoint: Endpoint,
    pub method: String,
    /// Header names in lower case.
    pub headers: Map<String, Value>,
    /// The socket peer; the worker's main thread decides the request's source from it (it
    /// reads settings, which this thread may not).
    pub peer: std::net::IpAddr,
    /// The TLS client certificate chain of the connection, leaf first (RFC 8705).
    pub certificate: Option<Arc<Vec<Vec<u8>>>>,
    pub content_type: String,
    pub body: Bytes,
    pub reply: oneshot::Sender<Reply>,
}

/// Requests a worker holds at once between reading their body and answering them (queued
/// or being answered); beyond it, 503. With the body limit this bounds the memory requests
/// take: QUEUE × pg_oauth.http_max_body (16 MiB at the default 64 KiB).
pub const QUEUE: usize = 256;

/// The most values a JSON body may hold (members, items, nested ones included): OAuth
/// requests carry a dozen; a 64 KiB array of numbers would otherwise be 30,000 values.
const MAX_JSON_VALUES: usize = 256;

/// The standard paths (RFC 8414 §3 for the metadata, SMART App Launch for its
/// configuration), and PostgREST's names for the two documents; publish them with
/// `pg_oauth.endpoint_prefix = ''`.
fn route(path: &str) -> Option<Endpoint> {
    Some(match path {
        "/token" => Endpoint::Token,
        "/revoke" => Endpoint::Revoke,
        "/introspect" => Endpoint::Introspect,
        "/jwks" => Endpoint::Jwks,
        "/.well-known/oauth-authorization-server" | "/metadata" => Endpoint::Metadata,
        "/.well-known/smart-configuration" | "/smart_configuration" => Endpoint::SmartConfiguration,
        "/.well-known/oauth-protected-resource" | "/protected_resource" => {
            Endpoint::ProtectedResource
        }
        "/metrics" => Endpoint::Metrics,
        _ => Endpoint::Console(console::action(path)?),
    })
}

/// What a worker's requests go to, shared by all its connections (one `Arc`): its queue, its
/// latch, its settings, and the permits for requests in flight.
pub(super) struct Handoff {
    pub jobs: mpsc::SyncSender<Job>,
    pub wake: Box<dyn Fn() + Send + Sync>,
    pub limits: Arc<Limits>,
    pub in_flight: Arc<Semaphore>,
    /// Where requests are counted (oauth.stats, /metrics), if shared memory is there.
    pub recorder: Option<Recorder>,
}

/// A reply as a hyper response.
fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(reply.status);
    let (content_type, body) = match reply.text {
        Some(text) => ("text/plain; version=0.0.4; charset=utf-8", text),
        None => ("application/json; charset=utf-8", reply.body.to_string()),
    };
    response = response.header("content-type", content_type);
    for (name, value) in &reply.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| respond(Reply::error(500, "server_error", "invalid response", None)))
}

pub(super) fn refuse(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    let retry_after = (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1);
    respond(Reply::error(
        status.as_u16(),
        error,
        description,
        retry_after,
    ))
}

/// The path label a request is counted under (pg/shmem/stats.rs).
fn path_label(path: &str, endpoint: Option<Endpoint>) -> &'static str {
    if sandbox::is_sandbox(path) {
        return "sandbox";
    }
    if console::is_console(path) {
        return "console";
    }
    match endpoint {
        Some(Endpoint::Token) => "token",
        Some(Endpoint::Revoke) => "revoke",
        Some(Endpoint::Introspect) => "introspect",
        Some(Endpoint::Jwks) => "jwks",
        Some(Endpoint::Metadata | Endpoint::SmartConfiguration | Endpoint::ProtectedResource) => {
            "metadata"
        }
        Some(Endpoint::Metrics) => "metrics",
        Some(Endpoint::Console(_)) => "console",
        None => "other",
    }
}

/// Answer one request (`answer_uncounted`), and count it with the time it took.
pub(super) async fn answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    certificate: Option<Arc<Vec<Vec<u8>>>>,
    handoff: Arc<Handoff>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let started = std::time::Instant::now();
    let path = path_label(req.uri().path(), route(req.uri().path()));
    let recorder = handoff.recorder;
    let response = answer_uncounted(req, peer, certificate, handoff).await;
    if let (Some(recorder), Ok(response)) = (recorder, &response) {
        recorder.request(path, response.status().as_u16(), started.elapsed());
    }
    response
}

/// Answer one request: route it, read its body within the bounds, hand it to the worker's
/// main thread and wait for the reply.
async fn answer_uncounted(
    req: Request<Incoming>,
    peer: SocketAddr,
    certificate: Option<Arc<Vec<Vec<u8>>>>,
    handoff: Arc<Handoff>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let endpoint = match endpoint_or_page(&req, &handoff.limits) {
        Ok(endpoint) => endpoint,
        Err(answered) => return Ok(*answered),
    };
    if !endpoint.allows(req.method().as_str()) {
        let method = req.method().as_str();
        return Ok(respond(Reply::wrong_method(endpoint, method)));
    }
    // A request in flight holds a permit from before its body is read until it is answered.
    let Ok(_permit) = handoff.in_flight.clone().try_acquire_owned() else {
        return Ok(busy("the server is busy; try again shortly"));
    };
    let method = req.method().as_str().to_owned();
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        // Two DPoP proofs make the request invalid (RFC 9449 §4.3): kept as a list, which
        // the handler refuses.
        if name.as_str() == "dpop" && headers.contains_key("dpop") {
            headers.insert("dpop".into(), Value::Array(Vec::new()));
            continue;
        }
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let Some(body) = read_body(req, &handoff.limits).await else {
        return Ok(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is too large, was cut off or came too slowly",
        ));
    };
    let (reply, answered) = oneshot::channel();
    let job = Job {
        endpoint,
        method,
        headers,
        peer: peer.ip(),
        certificate,
        content_type,
        body,
        reply,
    };
    match handoff.jobs.try_send(job) {
        Ok(()) => {}
        Err(mpsc::TrySendError::Full(_)) => {
            return Ok(busy("the server is busy; try again shortly"))
        }
        Err(mpsc::TrySendError::Disconnected(_)) => return Ok(busy("the server is shutting down")),
    }
    (handoff.wake)();
    Ok(match answered.await {
        Ok(reply) => respond(reply),
        Err(_) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the request failed; see the server log",
        ),
    })
}

/// The endpoint a request asks for; or the answer when it is a page's file (the sandbox's,
/// the console's, each while its setting is on) or nothing (404).
fn endpoint_or_page(
    req: &Request<Incoming>,
    limits: &Limits,
) -> Result<Endpoint, Box<Response<Full<Bytes>>>> {
    let path = req.uri().path();
    if sandbox::is_sandbox(path) && limits.sandbox.load(Ordering::Relaxed) {
        return Err(Box::new(page_file(req, sandbox::asset)));
    }
    let console_on = limits.console.load(Ordering::Relaxed);
    if console::is_console(path) && !console::is_api(path) && console_on {
        return Err(Box::new(page_file(req, console::asset)));
    }
    route(path)
        .filter(|e| console_on || !matches!(e, Endpoint::Console(_)))
        .ok_or_else(|| {
            Box::new(refuse(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            ))
        })
}

/// A file of a page (http/sandbox, http/console), GET or HEAD.
fn page_file(
    req: &Request<Incoming>,
    asset: fn(&str) -> Option<(&'static str, &'static str)>,
) -> Response<Full<Bytes>> {
    let method = req.method().as_str();
    if method != "GET" && method != "HEAD" {
        let mut reply = Reply::error(
            405,
            "invalid_request",
            &format!("use GET, not {method}"),
            None,
        );
        reply.headers.push(("Allow".into(), "GET, HEAD".into()));
        return respond(reply);
    }
    let Some((content_type, body)) = asset(req.uri().path()) else {
        return refuse(StatusCode::NOT_FOUND, "not_found", "no such endpoint");
    };
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type);
    for (name, value) in page::HEADERS {
        response = response.header(name, value);
    }
    let body = if method == "HEAD" { "" } else { body };
    response
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap_or_else(|_| {
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "invalid response",
            )
        })
}

/// The body, read within pg_oauth.http_max_body and, sent slowly, within the timeout as
/// headers are; None beyond either.
async fn read_body(req: Request<Incoming>, limits: &Limits) -> Option<Bytes> {
    let max_body = limits.max_body.load(Ordering::Relaxed);
    let body = Limited::new(req.into_body(), max_body).collect();
    match tokio::time::timeout(limits.timeout(), body).await {
        Ok(Ok(body)) => Some(body.to_bytes()),
        Ok(Err(_)) | Err(_) => None,
    }
}

fn busy(description: &str) -> Response<Full<Bytes>> {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        description,
    )
}

/// Whether a JSON body holds at most MAX_JSON_VALUES values: counted from its bytes (commas
/// and opening brackets outside strings), before anything is parsed.
fn json_within_bounds(body: &[u8]) -> bool {
    let (mut values, mut in_string, mut escaped) = (1usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b'[' | b'{' => values += 1,
            _ => {}
        }
        if values > MAX_JSON_VALUES {
            return false;
        }
    }
    true
}

/// Parameters a request may carry several of: RFC 8707 `resource` (and RFC 8693
/// `audience`), one value per field. A repeated field of these becomes a list; any other
/// repeated field is refused, as RFC 6749 §3.1 says ("MUST NOT be included more than once").
const LIST_FIELDS: [&str; 2] = ["resource", "audience"];

/// Why a body has no parameters; the description of a 400 `invalid_request`.
pub(super) const NOT_PARAMETERS: &str =
    "the body must be application/x-www-form-urlencoded or a JSON object (of at most 256 values)";

/// The body's parameters: form fields (repeated `resource` and `audience` fields kept as a
/// list, other repeated fields refused) or a JSON object's members (where a list is an
/// array); an empty body has none. Err: the description of the 400 to answer.
pub(super) fn params(content_type: &str, body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    if content_type.starts_with("application/json") {
        return json_within_bounds(body)
            .then(|| serde_json::from_slice::<Value>(body).ok())
            .flatten()
            .filter(Value::is_object)
            .ok_or_else(|| NOT_PARAMETERS.to_owned());
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(NOT_PARAMETERS.to_owned());
    }
    form_fields(body).ok_or_else(|| NOT_PARAMETERS.to_owned())?
}

/// The fields of a form body; None when it is not one (not UTF-8, bad percent-encoding).
fn form_fields(body: &[u8]) -> Option<Result<Value, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut fields = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (form_urldecode(name)?, Value::String(form_urldecode(value)?));
        match fields.get_mut(&name) {
            None => {
                fields.insert(name, value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) if LIST_FIELDS.contains(&name.as_str()) => {
                *first = Value::Array(vec![first.take(), value]);
            }
            Some(_) => {
                return Some(Err(format!(
                    "parameter {} is repeated; only resource and audience may be",
                    crate::error::quoted(&name)
                )))
            }
        }
    }
    Some(Ok(Value::Object(fields)))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn bodies_become_parameters() {
        let form = "application/x-www-form-urlencoded";
        assert_eq!(
            params(form, b"grant_type=client_credentials&scope=a+b"),
            Ok(serde_json::json!({"grant_type": "client_credentials", "scope": "a b"}))
        );
        assert_eq!(
            params("application/json", br#"{"token": "x"}"#),
            Ok(serde_json::json!({"token": "x"}))
        );
        let not_parameters = Err(NOT_PARAMETERS.to_owned());
        assert_eq!(params("application/json", b"[1]"), not_parameters);
        assert_eq!(params("text/plain", b"a=b"), not_parameters);
        assert_eq!(params("", b""), Ok(serde_json::json!({})));
        assert_eq!(params(form, b"a=%ff"), not_parameters);
    }

    #[test]
    fn repeated_resources_are_all_kept_and_other_repeated_fields_refused() {
        let form = "application/x-www-form-urlencoded";
        assert_eq!(
            params(
                form,
                b"resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb&resource=c&audience=d"
            ),
            Ok(serde_json::json!({"resource": ["https://a", "https://b", "c"], "audience": "d"}))
        );
        assert_eq!(
            params(form, b"grant_type=client_credentials&scope=a+b&scope=c%20d"),
            Err("parameter \"scope\" is repeated; only resource and audience may be".to_owned())
        );
        let repeated_secret =
            params(form, b"client_secret=s3cr3t-one&client_secret=s3cr3t-two").unwrap_err();
        assert!(repeated_secret.contains("client_secret"));
        assert!(!repeated_secret.contains("s3cr3t"), "{repeated_secret}");
    }

    #[test]
    fn json_bodies_are_bounded_before_they_are_parsed() {
        let json = "application/json";
        let many = format!("{{\"a\": [{}]}}", vec!["1"; 300].join(","));
        assert_eq!(
            params(json, many.as_bytes()),
            Err(NOT_PARAMETERS.to_owned())
        );
        let fine = format!("{{\"a\": [{}]}}", vec!["1"; 100].join(","));
        assert!(params(json, fine.as_bytes()).is_ok());
        // Commas and brackets inside strings are not values.
        let quoted = format!("{{\"a\": \"{}\"}}", ",[{".repeat(1000));
        assert!(params(json, quoted.as_bytes()).is_ok());
        let escaped = format!("{{\"a\": \"\\\"{}\"}}", ",".repeat(1000));
        assert!(params(json, escaped.as_bytes()).is_ok());
    }
}
