//! The listener's optional TLS: rustls (on aws-lc-rs, which the JOSE code links already),
//! TLS 1.2 and 1.3 with rustls' safe defaults, HTTP/1.1 by ALPN. The certificate chain and
//! key are PEM files named by `pg_oauth.http_tls_cert` / `pg_oauth.http_tls_key`, read at
//! start and again on each reload (so a renewed certificate needs no restart). With
//! `pg_oauth.http_tls_client_certificates`, clients may present a certificate (RFC 8705).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// The TLS configuration the two settings describe: None when both are empty (plain HTTP);
/// an error (for the log) when one is missing or a file is unreadable or invalid.
pub(super) fn load(
    cert: Option<&str>,
    key: Option<&str>,
    client_certificates: bool,
) -> Result<Option<Arc<ServerConfig>>, String> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            return Err(
                "set both pg_oauth.http_tls_cert and pg_oauth.http_tls_key, or neither".into(),
            )
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("cannot read certificates from {cert}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{cert} holds no PEM certificate"));
    }
    key_is_private(key)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {key}: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if client_certificates {
        builder.with_client_cert_verifier(Arc::new(AnyClientCertificate { provider }))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Asks for a client certificate, optionally, and takes any (RFC 8705 §2: a self-signed one
/// is as good as a CA's here): the handshake's signature check proves the client holds its
/// key, and which client it authenticates, if any, is decided per client (authn/mtls.rs).
#[derive(Debug)]
struct AnyClientCertificate {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// PostgreSQL's rule for `ssl_key_file`: the key file is owned by the server's user with no
/// group or world access (0600 or less), or by root with at most group read (0640 or less).
fn key_is_private(path: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let server_user = unsafe { libc::geteuid() };
    let mode = meta.mode();
    let refused = match meta.uid() {
        uid if uid == server_user => mode & 0o077 != 0,
        0 => mode & 0o037 != 0,
        _ => {
            return Err(format!(
                "the private key file {path} must be owned by the server's user or root"
            ))
        }
    };
    if refused {
        return Err(format!(
            "the private key file {path} has group or world access; it must have permissions \
             u=rw (0600) or less if owned by the server's user, or u=rw,g=r (0640) or less if \
             owned by root"
        ));
    }
    Ok(())
}
