//! The HTTP side of the listener: hyper (HTTP/1.1, keep-alive) on a current-thread tokio
//! runtime in one helper thread per worker, accepting on the postmaster's socket. Nothing
//! here calls into PostgreSQL: requests go to the worker's main thread (request.rs). On
//! SIGTERM the worker stops accepting, lets its connections finish the requests they carry,
//! and ends (`serve`'s `stop`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;

use super::limits::Security;
use super::request::{self, Handoff};

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

/// Accept on the postmaster's listening socket `fd` (every worker of the listener does, and
/// whichever is free takes a connection), say so on `ready`, then serve until `stop` turns
/// true (SIGTERM): then accept nothing more, let each connection finish the request it
/// carries (bounded by the timeout), and return.
pub(super) fn serve(
    fd: i32,
    handoff: Handoff,
    stop: watch::Receiver<bool>,
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
        accept_until_stopped(&listener, Arc::new(handoff), open.clone(), stop).await;
        drop(listener);
        // Connections end as their requests are answered; what has not, within the timeout
        // of a request, is cut.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while open.count.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(100), open.closed.notified()).await;
        }
    })
}

/// Accept connections, each served by a task of its own, until `stop` turns true.
async fn accept_until_stopped(
    listener: &tokio::net::TcpListener,
    handoff: Arc<Handoff>,
    open: Arc<Open>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = handoff.limits.clone();
    loop {
        // At the limit, accept nothing until a connection closes: the rest wait in the
        // kernel's queue (or go to another worker). Idle connections close after the
        // timeout, so it drains.
        while open.count.load(Ordering::Relaxed) >= limits.max_connections.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout(Duration::from_secs(1), open.closed.notified()).await;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // One address may not take every connection: beyond its share, closed at once (a
        // trusted proxy carries many clients, and is exempt).
        let source = peer.ip().to_canonical();
        let limited = !limits.exempt(source);
        if limited && !open.enter(source, limits.max_per_source.load(Ordering::Relaxed)) {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.count.fetch_add(1, Ordering::Relaxed);
        let (handoff, open, stop) = (handoff.clone(), open.clone(), stop.clone());
        tokio::spawn(async move {
            connection(stream, peer, handoff, stop).await;
            if limited {
                open.leave(source);
            }
            open.count.fetch_sub(1, Ordering::Relaxed);
            open.closed.notify_one();
        });
    }
}

/// One accepted connection: TLS if configured (never plain HTTP in its place), then HTTP.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    handoff: Arc<Handoff>,
    stop: watch::Receiver<bool>,
) {
    let (timeout, security) = (handoff.limits.timeout(), handoff.limits.security());
    // One Arc clone per request, of the one state the worker's connections share, and of
    // the certificate chain the client proved it holds the key of in the handshake.
    let service = move |certificate: Option<Arc<Vec<Vec<u8>>>>| {
        service_fn(move |req| request::answer(req, peer, certificate.clone(), handoff.clone()))
    };
    match security {
        // The handshake is bounded by the timeout as a request's headers are.
        Security::Tls(config) => {
            let handshake = TlsAcceptor::from(config).accept(stream);
            if let Ok(Ok(stream)) = tokio::time::timeout(timeout, handshake).await {
                let chain = stream.get_ref().1.peer_certificates();
                let certificate = chain.map(|c| Arc::new(c.iter().map(|d| d.to_vec()).collect()));
                serve_connection(stream, service(certificate), timeout, stop).await;
            }
        }
        Security::Plain => serve_connection(stream, service(None), timeout, stop).await,
        Security::Unavailable => drop(stream),
    }
}

/// HTTP/1.1 on one connection (plain or TLS) until it closes or its time is up.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
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
    let mut connection = std::pin::pin!(connection);
    // A whole connection, including its keep-alive time, is bounded too.
    let _ = tokio::time::timeout(timeout * 30, async {
        tokio::select! {
            _ = connection.as_mut() => {}
            _ = async { drop(stop.wait_for(|stopped| *stopped).await) } => {
                // The request being read or answered completes; then the connection closes.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    })
    .await;
}
