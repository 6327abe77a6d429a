//! The HTTP side of the listener: hyper (HTTP/1.1, keep-alive) on a current-thread tokio
//! runtime in one helper thread per worker. Nothing here calls into PostgreSQL: a request
//! becomes a [`Job`] sent to the worker's main thread, which answers through a oneshot.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Map, Value};
use tokio::sync::{oneshot, Semaphore};

use super::Endpoint;
use crate::api::postgrest::basic::form_urldecode;

/// One request for the worker's main thread.
pub(super) struct Job {
    pub endpoint: Endpoint,
    pub method: String,
    /// Lower-case names, as PostgREST gives them in `request.headers`.
    pub headers: Map<String, Value>,
    pub params: Value,
    pub peer: SocketAddr,
    pub reply: oneshot::Sender<Reply>,
}

/// The answer: status, headers, JSON body.
pub(super) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub(super) struct Limits {
    pub max_connections: usize,
    pub max_body: usize,
    pub timeout: Duration,
}

/// Listen on `address` (SO_REUSEPORT, so every worker of the listener binds it), say so on
/// `ready`, then serve until the process exits: accept, parse, hand each request to `jobs`
/// and call `wake` so the main thread looks.
pub(super) fn serve(
    address: SocketAddr,
    jobs: mpsc::Sender<Job>,
    wake: Arc<dyn Fn() + Send + Sync>,
    limits: Limits,
    ready: mpsc::Sender<Result<(), String>>,
) {
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
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let limits = Arc::new(limits);
        loop {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (jobs, wake, limits) = (jobs.clone(), wake.clone(), limits.clone());
            let timeout = limits.timeout;
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    answer(req, peer, jobs.clone(), wake.clone(), limits.clone())
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(timeout)
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), service);
                // A whole connection, including idle keep-alive time, is bounded too.
                let _ = tokio::time::timeout(timeout * 30, connection).await;
                drop(permit);
            });
        }
    })
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
    let Some(endpoint) = Endpoint::route(req.uri().path()) else {
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
    let body = match Limited::new(req.into_body(), limits.max_body)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(json_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large or was cut off",
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
        method,
        headers,
        params,
        peer,
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
        .body(Full::new(Bytes::from(reply.body)))
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
