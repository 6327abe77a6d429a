//! Mutual TLS (RFC 8705): the client certificate a request carries — from the listener's own
//! TLS handshake, or forwarded by a proxy we trust — and client authentication by it:
//! `tls_client_auth` (a certificate a trusted CA issued, with the name the client registered)
//! and `self_signed_tls_client_auth` (the very certificate in the client's JWK Set, `x5c`).
//! The handshake proved the client holds the certificate's key; here it is decided which
//! client, if any, that makes it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use pgrx::spi::SpiClient;
use rustls::RootCertStore;
use serde_json::{Map, Value};

use crate::authn::source::{self, Edge};
use crate::config::gucs::{self, Transport};
use crate::crypto::certificate::{self, Certificate};
use crate::error::{OAuthError, Result};
use crate::pg::shmem::stats;
use crate::store::client::{load, Client};

/// The client certificate of a request that reached us at `edge`: the chain of the
/// listener's TLS handshake; else, from a trusted proxy only, the certificate in the header
/// `pg_oauth.client_certificate_header` names (an empty or unreadable one is none).
pub fn presented(
    edge: Edge,
    handshake: Option<Vec<Vec<u8>>>,
    headers: &Map<String, Value>,
) -> Option<Certificate> {
    if let Some(chain) = handshake {
        return Certificate::from_chain(chain);
    }
    let name = gucs::string(&gucs::CLIENT_CERTIFICATE_HEADER)?.to_ascii_lowercase();
    let value = headers.get(name.as_str())?.as_str()?;
    if value.trim().is_empty() || !source::is_trusted_proxy(edge) {
        return None;
    }
    Certificate::parse(value).ok()
}

/// Whether requests over `transport` may carry a client certificate: forwarded by a proxy,
/// or, on the listener, from its own TLS (what the metadata says, RFC 8705 §3.3).
pub fn enabled(transport: Transport) -> bool {
    gucs::string(&gucs::CLIENT_CERTIFICATE_HEADER).is_some()
        || (transport == Transport::Listener
            && gucs::HTTP_TLS_CLIENT_CERTIFICATES.get()
            && gucs::string(&gucs::HTTP_TLS_CERT).is_some())
}

/// Authenticate client `client_id` by `certificate` (RFC 8705 §2). The reasons are for the
/// audit trail; the caller sees invalid_client.
pub fn authenticate(
    spi: &SpiClient<'_>,
    client_id: &str,
    certificate: &Certificate,
) -> Result<Rc<Client>> {
    let failed = |reason: &str| {
        stats::count("client_authentication_failures", &["certificate"]);
        Err(OAuthError::AuthenticationFailed {
            reason: reason.to_owned(),
        })
    };
    let Some(client) = load(spi, client_id)? else {
        return failed("unknown client");
    };
    let matched = match &client.tls_client_auth {
        Some((kind, name)) => {
            let Some(roots) = trusted_roots()? else {
                return failed("tls_client_auth without pg_oauth.tls_client_ca_file");
            };
            if !certificate.chains_to(&roots) {
                return failed("client certificate not issued by a trusted CA");
            }
            certificate.has_name(*kind, name)
        }
        None => registered_certificates(&client).any(|x5c| certificate.is_first_of(x5c)),
    };
    if !matched {
        return failed("client certificate does not match the client's registration");
    }
    if !client.active {
        return Err(OAuthError::InvalidClient("client is inactive".into()));
    }
    Ok(client)
}

/// The `x5c` members of the client's registered JWK Set.
fn registered_certificates(client: &Client) -> impl Iterator<Item = &Value> {
    client
        .jwks
        .as_ref()
        .and_then(|jwks| jwks.get("keys"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|key| key.get("x5c"))
}

/// The CAs of `pg_oauth.tls_client_ca_file` as last read, and what says it is still that
/// file: its path, modification time and length.
struct Roots {
    path: String,
    modified: std::time::SystemTime,
    len: u64,
    anchors: Arc<RootCertStore>,
}

thread_local! {
    static ROOTS: RefCell<Option<Roots>> = const { RefCell::new(None) };
}

/// The trust anchors for tls_client_auth; None when no CA file is set. Read again when the
/// file changes.
fn trusted_roots() -> Result<Option<Arc<RootCertStore>>> {
    let Some(path) = gucs::string(&gucs::TLS_CLIENT_CA_FILE) else {
        return Ok(None);
    };
    // The file and why go to the server log; the caller learns only that it is misconfigured.
    let unreadable = |why: String| {
        pgrx::log!("pg_oauth: pg_oauth.tls_client_ca_file: {why}");
        OAuthError::ServerError(
            "client certificates cannot be checked: pg_oauth.tls_client_ca_file is unusable \
             (see the server log)"
                .into(),
        )
    };
    let meta = std::fs::metadata(&path).map_err(|e| unreadable(e.to_string()))?;
    let modified = meta.modified().map_err(|e| unreadable(e.to_string()))?;
    let cached = ROOTS.with_borrow(|cached| {
        cached
            .as_ref()
            .filter(|r| r.path == path && r.modified == modified && r.len == meta.len())
            .map(|r| r.anchors.clone())
    });
    if let Some(anchors) = cached {
        return Ok(Some(anchors));
    }
    let anchors = certificate::roots_from_pem_file(&path).map_err(unreadable)?;
    ROOTS.set(Some(Roots {
        path,
        modified,
        len: meta.len(),
        anchors: anchors.clone(),
    }));
    Ok(Some(anchors))
}
