//! The listener's reloadable settings, as the worker's main thread last loaded them (at
//! start and after each SIGHUP), read by its HTTP thread for each connection and request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;

use crate::authn::source;

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
    pub max_connections: AtomicUsize,
    pub max_per_source: AtomicUsize,
    pub max_body: AtomicUsize,
    timeout_ms: AtomicU64,
    /// pg_oauth.http_sandbox: whether /sandbox is served.
    pub sandbox: AtomicBool,
    /// pg_oauth.http_console: whether /console (its page and its API) is served.
    pub console: AtomicBool,
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

    pub fn exempt(&self, peer: std::net::IpAddr) -> bool {
        self.trusted
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .is_some_and(|t| source::is_trusted(peer, t))
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

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }
}
