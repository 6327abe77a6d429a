//! The HTTP side of the listener: hyper (HTTP/1.1, keep-alive) on a current-thread tokio
//! runtime in one helper thread per worker. Nothing here calls into PostgreSQL: a request
//! becomes a [`Job`] sent to the worker's main thread, which answers through a oneshot.

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
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, Notify};
use tokio_rustls::TlsAcceptor;

use super::route;
use crate::api::http::basic::form_urldecode;
use crate::api::http::{self, Endpoint, Reply};

/// One request for the worker's main thread.
pub(super) struct Job {
    pub endpoint: Endpoint,
    pub request: http::Request,
    pub params: Value,
    pub reply: oneshot::Sender<Reply>,
}

/// The reloadable settings: the worker's main thread stores them (at start and after
/// each SIGHUP), the HTTP thread reads them for each connection and request.
#[derive(Default)]
pub(super) struct Limits {
    max_connections: AtomicUsize,
    max_body: AtomicUsize,
    timeout_ms: AtomicU64,
    /// TLS for new connections; None: plain HTTP.
    tls: RwLock<Option<Arc<ServerConfig>>>,
}

impl Limits {
    pub fn set(&self, max_connections: usize, max_body: usize, timeout: Duration) {
        self.max_connections
            .store(max_connections, Ordering::Relaxed);
        self.max_body.store(max_body, Ordering::Relaxed);
        self.timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_tls(&self, tls: Option<Arc<ServerConfig>>) {
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
    }

    fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }
}

/// Open connections, and a signal when one closes.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    closed: Notify,
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

/// Listen on `address` (SO_REUSEPORT, so every worker of the listener binds it), say so on
/// `ready`, then serve until the process exits: accept, parse, hand each request to `jobs`
/// and call `wake` so the main thread looks.
pub(super) fn serve(
    address: SocketAddr,
    jobs: mpsc::Sender<Job>,
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
        let listener = match bind(address) {
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
            let _ = stream.set_nodelay(true);
            open.count.fetch_add(1, Ordering::Relaxed);
            let (jobs, wake, limits, open) =
                (jobs.clone(), wake.clone(), limits.clone(), open.clone());
            let (timeout, tls) = (limits.timeout(), limits.tls());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    answer(req, peer, jobs.clone(), wake.clone(), limits.clone())
                });
                match tls {
                    // The handshake is bounded by the timeout as a request's headers are.
                    Some(config) => {
                        let handshake = TlsAcceptor::from(config).accept(stream);
                        if let Ok(Ok(stream)) = tokio::time::timeout(timeout, handshake).await {
                            serve_connection(stream, service, timeout).await;
                        }
                    }
                    None => serve_connection(stream, service, timeout).await,
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

fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

fn json_reply(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": error, "error_description": description });
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

async fn answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    jobs: mpsc::Sender<Job>,
    wake: Arc<dyn Fn() + Send + Sync>,
    limits: Arc<Limits>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let Some(endpoint) = route(req.uri().path()) else {
        return Ok(json_reply(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        ));
    };
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Ok(json_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "use GET or POST",
        ));
    }
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
    let max_body = limits.max_body.load(Ordering::Relaxed);
    let body = Limited::new(req.into_body(), max_body).collect();
    let body = match tokio::time::timeout(limits.timeout(), body).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) | Err(_) => {
            return Ok(json_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large, was cut off or came too slowly",
            ))
        }
    };
    let Some(params) = params(&content_type, &body) else {
        return Ok(json_reply(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded or a JSON object",
        ));
    };
    let (reply, answered) = oneshot::channel();
    let job = Job {
        endpoint,
        request: http::Request {
            method: Some(method),
            headers,
            peer: Some(peer.ip().to_string()),
        },
        params,
        reply,
    };
    if jobs.send(job).is_err() {
        return Ok(json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the server is shutting down",
        ));
    }
    wake();
    let Ok(reply) = answered.await else {
        return Ok(json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the request failed; see the server log",
        ));
    };
    let mut response = Response::builder().status(reply.status);
    response = response.header("content-type", "application/json; charset=utf-8");
    for (name, value) in &reply.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    Ok(response
        .body(Full::new(Bytes::from(reply.body.to_string())))
        .unwrap_or_else(|_| {
            json_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "invalid response",
            )
        }))
}

/// The body's parameters as PostgREST would pass them: form fields (a repeated field keeps
/// its last value) or a JSON object's members; an empty body has none.
fn params(content_type: &str, body: &[u8]) -> Option<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Value::Object(Map::new()));
    }
    if content_type.starts_with("application/json") {
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
}
