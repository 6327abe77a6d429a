//! The HTTP side of the listener: hyper (HTTP/1.1, keep-alive) on a current-thread tokio
//! runtime in one helper thread per worker. Nothing here calls into PostgreSQL: a request
//! becomes a [`Job`] sent to the worker's main thread, which answers through a oneshot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::route;
use crate::api::http::basic::form_urldecode;
use crate::api::http::{self, Endpoint, Reply};
use crate::authn::attempts;

/// One request for the worker's main thread. The body stays raw bytes until that thread
/// takes the job (and parses it, `params`): a queue of parsed JSON could hold far more
/// memory than its bytes.
pub(super) struct Job {
    pub endpoint: Endpoint,
    pub request: http::Request,
    pub content_type: String,
    pub body: Bytes,
    pub reply: oneshot::Sender<Reply>,
}

/// Requests a worker holds at once between reading their body and answering them (queued
/// or being answered); beyond it, 503. With the body limit this bounds the memory requests
/// take: QUEUE × pg_oauth.http_max_body (16 MiB at the default 64 KiB).
pub(super) const QUEUE: usize = 256;

/// The most values a JSON body may hold (members, items, nested ones included): OAuth
/// requests carry a dozen; a 64 KiB array of numbers would otherwise be 30,000 values.
const MAX_JSON_VALUES: usize = 256;

/// What a new connection gets: plain HTTP, TLS, or (TLS asked for but its certificate or key
/// not loadable) closed at once — never plain HTTP in TLS's place.
#[derive(Clone, Default)]
pub(super) enum Security {
    Plain,
    Tls(Arc<ServerConfig>),
    #[default]
    Unavailable,
}

/// The reloadable settings: the worker's main thread stores them (at start and after
/// each SIGHUP), the HTTP thread reads them for each connection and request.
#[derive(Default)]
pub(super) struct Limits {
    max_connections: AtomicUsize,
    max_per_source: AtomicUsize,
    max_body: AtomicUsize,
    timeout_ms: AtomicU64,
    /// What new connections get.
    security: RwLock<Security>,
    /// pg_oauth.http_trusted_proxies, exempt from the per-source limit.
    trusted: RwLock<Option<String>>,
}

impl Limits {
    pub fn set_per_source(&self, max_per_source: usize, trusted: Option<String>) {
        self.max_per_source.store(max_per_source, Ordering::Relaxed);
        *self.trusted.write().unwrap_or_else(|e| e.into_inner()) = trusted;
    }

    fn exempt(&self, peer: std::net::IpAddr) -> bool {
        self.trusted
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .is_some_and(|t| attempts::is_trusted(peer, t))
    }

    pub fn set(&self, max_connections: usize, max_body: usize, timeout: Duration) {
        self.max_connections
            .store(max_connections, Ordering::Relaxed);
        self.max_body.store(max_body, Ordering::Relaxed);
        self.timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_security(&self, security: Security) {
        *self.security.write().unwrap_or_else(|e| e.into_inner()) = security;
    }

    pub fn security(&self) -> Security {
        self.security
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }
}

/// Open connections, in all and per source address, and a signal when one closes.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    closed: Notify,
    per_source: std::sync::Mutex<HashMap<std::net::IpAddr, usize>>,
}

impl Open {
    /// Count a connection from `peer`, unless it has `limit` open already.
    fn enter(&self, peer: std::net::IpAddr, limit: usize) -> bool {
        let mut open = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(peer).or_insert(0);
        if *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, peer: std::net::IpAddr) {
        let mut open = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&peer);
            }
        }
    }
}

/// Raise this process's soft limit on open files to its hard limit: each connection is a
/// descriptor, and the soft limit is often 1024. PostgreSQL's own files are bounded by
/// max_files_per_process, whatever the limit.
fn raise_descriptor_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Accept on the postmaster's listening socket `fd` (every worker of the listener does, and
/// whichever is free takes a connection), say so on `ready`, then serve until the process
/// exits: accept, parse, hand each request to `jobs` and call `wake` so the main thread looks.
pub(super) fn serve(
    fd: i32,
    jobs: mpsc::SyncSender<Job>,
    wake: Arc<dyn Fn() + Send + Sync>,
    limits: Arc<Limits>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    raise_descriptor_limit();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match inherited(fd) {
            Ok(listener) => {
                let _ = ready.send(Ok(()));
                listener
            }
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let open = Arc::new(Open::default());
        let in_flight = Arc::new(Semaphore::new(QUEUE));
        loop {
            // At the limit, accept nothing until a connection closes: the rest wait in the
            // kernel's queue. Idle connections close after the timeout, so it drains.
            while open.count.load(Ordering::Relaxed)
                >= limits.max_connections.load(Ordering::Relaxed)
            {
                let _ = tokio::time::timeout(Duration::from_secs(1), open.closed.notified()).await;
            }
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            // One address may not take every connection: beyond its share, closed at once
            // (a trusted proxy carries many clients, and is exempt).
            let source = peer.ip().to_canonical();
            let limited = !limits.exempt(source);
            if limited && !open.enter(source, limits.max_per_source.load(Ordering::Relaxed)) {
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            open.count.fetch_add(1, Ordering::Relaxed);
            let (jobs, wake, limits, open, in_flight) = (
                jobs.clone(),
                wake.clone(),
                limits.clone(),
                open.clone(),
                in_flight.clone(),
            );
            let (timeout, security) = (limits.timeout(), limits.security());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let worker = Worker {
                        jobs: jobs.clone(),
                        wake: wake.clone(),
                        limits: limits.clone(),
                        in_flight: in_flight.clone(),
                    };
                    answer(req, peer, worker)
                });
                match security {
                    // The handshake is bounded by the timeout as a request's headers are.
                    Security::Tls(config) => {
                        let handshake = TlsAcceptor::from(config).accept(stream);
                        if let Ok(Ok(stream)) = tokio::time::timeout(timeout, handshake).await {
                            serve_connection(stream, service, timeout).await;
                        }
                    }
                    Security::Plain => serve_connection(stream, service, timeout).await,
                    Security::Unavailable => drop(stream),
                }
                if limited {
                    open.leave(source);
                }
                open.count.fetch_sub(1, Ordering::Relaxed);
                open.closed.notify_one();
            });
        }
    })
}

/// HTTP/1.1 on one connection (plain or TLS) until it closes or its time is up.
async fn serve_connection<I, S>(io: I, service: S, timeout: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        // Also bounds the wait for the next request on an idle connection.
        .header_read_timeout(timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(io), service);
    // A whole connection, including its keep-alive time, is bounded too.
    let _ = tokio::time::timeout(timeout * 30, connection).await;
}

/// Bind and listen on `address` (in the postmaster): the socket's descriptor, non-blocking,
/// which the workers it forks inherit. SO_REUSEADDR only, as PostgreSQL binds its port: a
/// restart rebinds at once, and a port another process holds is refused.
pub(super) fn bind(address: SocketAddr) -> std::io::Result<i32> {
    use std::os::fd::IntoRawFd;
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let fd = listener.into_raw_fd();
    // A deeper accept queue than std's default, for bursts of new connections.
    // SAFETY: listen(2) on the socket just bound; it only changes the backlog.
    unsafe { libc::listen(fd, 1024) };
    Ok(fd)
}

/// This worker's handle on the postmaster's listening socket `fd`.
fn inherited(fd: i32) -> std::io::Result<tokio::net::TcpListener> {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is the listening socket the postmaster bound before forking this worker
    // and keeps open while it lives; dup gives this process a descriptor of its own, which
    // the TcpListener owns and closes.
    let own = unsafe { libc::dup(fd) };
    if own < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `own` is a fresh descriptor of a listening TCP socket, owned by nothing else.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(own) };
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// A reply as a hyper response.
fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(reply.status);
    response = response.header("content-type", "application/json; charset=utf-8");
    for (name, value) in &reply.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response
        .body(Full::new(Bytes::from(reply.body.to_string())))
        .unwrap_or_else(|_| respond(Reply::error(500, "server_error", "invalid response", None)))
}

fn refuse(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    let retry_after = (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1);
    respond(Reply::error(
        status.as_u16(),
        error,
        description,
        retry_after,
    ))
}

/// What a connection's requests go to: the worker's queue, its latch, the settings, and the
/// permits for requests in flight.
struct Worker {
    jobs: mpsc::SyncSender<Job>,
    wake: Arc<dyn Fn() + Send + Sync>,
    limits: Arc<Limits>,
    in_flight: Arc<Semaphore>,
}

async fn answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    worker: Worker,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let Some(endpoint) = route(req.uri().path()) else {
        return Ok(refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        ));
    };
    if !endpoint.allows(req.method().as_str()) {
        return Ok(respond(Reply::wrong_method(
            endpoint,
            req.method().as_str(),
        )));
    }
    // A request in flight holds a permit from before its body is read until it is answered.
    let Ok(_permit) = worker.in_flight.clone().try_acquire_owned() else {
        return Ok(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the server is busy; try again shortly",
        ));
    };
    let method = req.method().as_str().to_owned();
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    // A body sent slowly is bounded by the timeout as headers are.
    let max_body = worker.limits.max_body.load(Ordering::Relaxed);
    let body = Limited::new(req.into_body(), max_body).collect();
    let body = match tokio::time::timeout(worker.limits.timeout(), body).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) | Err(_) => {
            return Ok(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large, was cut off or came too slowly",
            ))
        }
    };
    let (reply, answered) = oneshot::channel();
    let job = Job {
        endpoint,
        request: http::Request {
            transport: http::Transport::Listener,
            method: Some(method),
            headers,
            peer: Some(peer.ip().to_string()),
        },
        content_type,
        body,
        reply,
    };
    match worker.jobs.try_send(job) {
        Ok(()) => {}
        Err(mpsc::TrySendError::Full(_)) => {
            return Ok(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the server is busy; try again shortly",
            ))
        }
        Err(mpsc::TrySendError::Disconnected(_)) => {
            return Ok(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the server is shutting down",
            ))
        }
    }
    (worker.wake)();
    let Ok(reply) = answered.await else {
        return Ok(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the request failed; see the server log",
        ));
    };
    Ok(respond(reply))
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

/// The body's parameters as PostgREST would pass them: form fields (a repeated field keeps
/// its last value) or a JSON object's members; an empty body has none.
pub(super) fn params(content_type: &str, body: &[u8]) -> Option<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Value::Object(Map::new()));
    }
    if content_type.starts_with("application/json") {
        if !json_within_bounds(body) {
            return None;
        }
        return serde_json::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object);
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut fields = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        fields.insert(form_urldecode(name)?, Value::String(form_urldecode(value)?));
    }
    Some(Value::Object(fields))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn bodies_become_parameters_as_postgrest_makes_them() {
        let form = "application/x-www-form-urlencoded";
        assert_eq!(
            params(form, b"grant_type=client_credentials&scope=a+b&scope=c%20d"),
            Some(serde_json::json!({"grant_type": "client_credentials", "scope": "c d"}))
        );
        assert_eq!(
            params("application/json", br#"{"token": "x"}"#),
            Some(serde_json::json!({"token": "x"}))
        );
        assert_eq!(params("application/json", b"[1]"), None);
        assert_eq!(params("text/plain", b"a=b"), None);
        assert_eq!(params("", b""), Some(serde_json::json!({})));
        assert_eq!(params(form, b"a=%ff"), None);
    }

    #[test]
    fn json_bodies_are_bounded_before_they_are_parsed() {
        let json = "application/json";
        let many = format!("{{\"a\": [{}]}}", vec!["1"; 300].join(","));
        assert_eq!(params(json, many.as_bytes()), None);
        let fine = format!("{{\"a\": [{}]}}", vec!["1"; 100].join(","));
        assert!(params(json, fine.as_bytes()).is_some());
        // Commas and brackets inside strings are not values.
        let quoted = format!("{{\"a\": \"{}\"}}", ",[{".repeat(1000));
        assert!(params(json, quoted.as_bytes()).is_some());
        let escaped = format!("{{\"a\": \"\\\"{}\"}}", ",".repeat(1000));
        assert!(params(json, escaped.as_bytes()).is_some());
    }
}
