//! TLS client certificates (RFC 8705): as a TLS handshake gives them (DER, leaf first) or as
//! a trusted proxy forwards the leaf (PEM, nginx's URL-escaped PEM, or base64 DER); the
//! SHA-256 thumbprint a certificate-bound token carries (`cnf.x5t#S256`, §3.1); the subject
//! DN and subject alternative names `tls_client_auth` matches (§2.1.2); and the chain check
//! against the CAs that client authentication trusts.

use std::sync::Arc;

use base64::Engine;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// The most a forwarded certificate may take, and the most certificates a chain may have:
/// a client certificate is a few KiB; anything larger is not one.
const MAX_BYTES: usize = 16 * 1024;
const MAX_CHAIN: usize = 8;

/// A client's certificate chain, leaf first; the leaf parses as an X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    chain: Vec<Vec<u8>>,
}

/// What `tls_client_auth` may match a certificate by (RFC 8705 §2.1.2): its subject DN or one
/// of its subject alternative names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    SubjectDn,
    Dns,
    Uri,
    Ip,
    Email,
}

impl Certificate {
    /// The chain a TLS handshake verified possession of (leaf first), if it has a leaf that
    /// parses.
    pub fn from_chain(chain: Vec<Vec<u8>>) -> Option<Certificate> {
        let leaf = chain.first()?;
        if chain.len() > MAX_CHAIN || x509_cert::Certificate::from_der(leaf).is_err() {
            return None;
        }
        Some(Certificate { chain })
    }

    /// The leaf a proxy forwards or a SQL caller passes: PEM, PEM URL-escaped as nginx's
    /// `$ssl_client_escaped_cert`, or base64 (standard or URL-safe) DER.
    pub fn parse(text: &str) -> Result<Certificate, &'static str> {
        let text = text.trim();
        if text.len() > 3 * MAX_BYTES {
            return Err("the client certificate is too large");
        }
        let unescaped;
        let pem = if text.starts_with("-----BEGIN%20") {
            unescaped = percent_decode(text).ok_or("the client certificate is badly escaped")?;
            unescaped.as_str()
        } else {
            text
        };
        let der = if pem.starts_with("-----BEGIN") {
            CertificateDer::from_pem_slice(pem.as_bytes())
                .map(|c| c.to_vec())
                .map_err(|_| "the client certificate is not a PEM certificate")?
        } else {
            let compact: String = pem.chars().filter(|c| !c.is_whitespace()).collect();
            let compact = compact.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(compact)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(compact))
                .map_err(|_| "the client certificate is neither PEM nor base64 DER")?
        };
        if der.len() > MAX_BYTES {
            return Err("the client certificate is too large");
        }
        Certificate::from_chain(vec![der])
            .ok_or("the client certificate is not an X.509 certificate")
    }

    /// The leaf certificate, DER.
    pub fn leaf(&self) -> &[u8] {
        &self.chain[0]
    }

    /// `x5t#S256`: the base64url SHA-256 of the leaf's DER (RFC 8705 §3.1).
    pub fn thumbprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.leaf());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// Whether the leaf has `expected` as its name of `kind`: the subject DN compared in its
    /// RFC 4514 form (both written the same way), DNS names and e-mail addresses without
    /// regard to case, URIs exactly, IP addresses as addresses.
    pub fn has_name(&self, kind: NameKind, expected: &str) -> bool {
        let Ok(cert) = x509_cert::Certificate::from_der(self.leaf()) else {
            return false;
        };
        let tbs = &cert.tbs_certificate;
        if kind == NameKind::SubjectDn {
            let Ok(expected) = loose_dn(expected).parse::<x509_cert::name::RdnSequence>() else {
                return false;
            };
            return !tbs.subject.0.is_empty() && tbs.subject.to_string() == expected.to_string();
        }
        let Ok(Some((_, SubjectAltName(names)))) = tbs.get::<SubjectAltName>() else {
            return false;
        };
        names.iter().any(|name| match (kind, name) {
            (NameKind::Dns, GeneralName::DnsName(n)) => n.as_str().eq_ignore_ascii_case(expected),
            (NameKind::Email, GeneralName::Rfc822Name(n)) => {
                n.as_str().eq_ignore_ascii_case(expected)
            }
            (NameKind::Uri, GeneralName::UniformResourceIdentifier(n)) => n.as_str() == expected,
            (NameKind::Ip, GeneralName::IpAddress(n)) => expected
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| match ip {
                    std::net::IpAddr::V4(v4) => n.as_bytes() == v4.octets(),
                    std::net::IpAddr::V6(v6) => n.as_bytes() == v6.octets(),
                }),
            _ => false,
        })
    }

    /// Whether the chain leads to one of `roots` for client authentication, valid now (as
    /// a TLS server verifies a client's chain: webpki, the EKU, validity dates).
    pub fn chains_to(&self, roots: &Arc<RootCertStore>) -> bool {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let Ok(verifier) =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider).build()
        else {
            return false;
        };
        let leaf = CertificateDer::from(self.leaf());
        let intermediates: Vec<CertificateDer<'_>> = self.chain[1..]
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        verifier
            .verify_client_cert(&leaf, &intermediates, UnixTime::now())
            .is_ok()
    }

    /// Whether `x5c` (a JWK's base64 DER chain, RFC 7517 §4.7) starts with this leaf.
    pub fn is_first_of(&self, x5c: &serde_json::Value) -> bool {
        x5c.get(0)
            .and_then(serde_json::Value::as_str)
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .is_some_and(|der| der == self.leaf())
    }
}

/// The CA certificates in the PEM file `path`, as trust anchors.
pub fn roots_from_pem_file(path: &str) -> Result<Arc<RootCertStore>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("cannot read certificates from {path}: {e}"))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{path} holds no usable CA certificate"));
    }
    Ok(Arc::new(roots))
}

/// A DN as people write it (`CN=svc, O=Example`): RFC 4514 has no space after the separators.
fn loose_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let (mut escaped, mut separated) = (false, true);
    for c in dn.trim().chars() {
        if separated && c == ' ' {
            continue;
        }
        separated = !escaped && (c == ',' || c == '+');
        escaped = !escaped && c == '\\';
        out.push(c);
    }
    out
}

/// RFC 3986 percent-decoding of escaped PEM (nginx escapes its newlines, spaces and `+/=`).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A test certificate (unit tests, fuzz.rs).
#[cfg(test)]
pub(crate) use unit::PEM as TEST_PEM;

#[cfg(test)]
mod unit {
    use super::*;

    /// `openssl req -x509 -subj "/O=pg_oauth tests/CN=svc-a" -addext subjectAltName=
    /// DNS:svc-a.example,URI:spiffe://example/svc-a,IP:10.1.2.3,email:svc-a@example.com`.
    pub(crate) const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIB9jCCAZygAwIBAgIUL5+UjuqajY2D+wZhNwfvdVJSUvcwCgYIKoZIzj0EAwIw
KTEXMBUGA1UECgwOcGdfb2F1dGggdGVzdHMxDjAMBgNVBAMMBXN2Yy1hMCAXDTI2
MTIwMjA3NDcwOFoYDzIxMjYxMTA4MDc0NzA4WjApMRcwFQYDVQQKDA5wZ19vYXV0
aCB0ZXN0czEOMAwGA1UEAwwFc3ZjLWEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AATH8JECH6WTfqrDUfJFI/hfvMvyE4aKepPXwEkBmhH/VUVR8d6Ie9V68v8zSWZ/
ZKgwi3OKkK1FdCU7jdxhEdLao4GfMIGcMB0GA1UdDgQWBBQoHTF0D86GD5k01L0/
QJo22ghsADAfBgNVHSMEGDAWgBQoHTF0D86GD5k01L0/QJo22ghsADAPBgNVHRMB
Af8EBTADAQH/MEkGA1UdEQRCMECCDXN2Yy1hLmV4YW1wbGWGFnNwaWZmZTovL2V4
YW1wbGUvc3ZjLWGHBAoBAgOBEXN2Yy1hQGV4YW1wbGUuY29tMAoGCCqGSM49BAMC
A0gAMEUCIQCIHs5f4uY7bjWREsVdXGpE1AmrmL63tTytjYzpt4ZI9wIgaglm5WSA
8EnKfMpPpvfaVSYEfKKgXI0PuKQgCEhLoAI=
-----END CERTIFICATE-----
";
    /// `openssl x509 -outform DER | openssl dgst -sha256 -binary`, base64url.
    const X5T: &str = "YoWhF3hzLEKbLQCbdrmPgAlnikNf_rpduJnKdHAGdQ4";

    #[test]
    fn a_certificate_reads_the_same_in_every_form_a_proxy_or_caller_sends() {
        let pem = Certificate::parse(PEM).unwrap();
        assert_eq!(pem.thumbprint(), X5T);
        // nginx's $ssl_client_escaped_cert.
        let escaped: String = PEM
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        assert_eq!(Certificate::parse(&escaped).unwrap(), pem);
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem.leaf());
        assert_eq!(Certificate::parse(&b64).unwrap(), pem);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pem.leaf());
        assert_eq!(Certificate::parse(&b64url).unwrap(), pem);
        for refused in ["", "not a certificate", "-----BEGIN%2", "AAAA", &PEM[..200]] {
            assert!(Certificate::parse(refused).is_err(), "{refused:?}");
        }
        assert!(pem.is_first_of(&serde_json::json!([b64])));
        assert!(!pem.is_first_of(&serde_json::json!(["AAAA", b64])));
    }

    #[test]
    fn tls_client_auth_names_match_as_rfc_8705_registers_them() {
        let cert = Certificate::parse(PEM).unwrap();
        use NameKind::*;
        for (kind, name) in [
            (SubjectDn, "CN=svc-a,O=pg_oauth tests"),
            (SubjectDn, "CN=svc-a, O=pg_oauth tests"),
            (Dns, "svc-a.example"),
            (Dns, "SVC-A.example"),
            (Uri, "spiffe://example/svc-a"),
            (Ip, "10.1.2.3"),
            (Email, "svc-a@example.com"),
        ] {
            assert!(cert.has_name(kind, name), "{kind:?} {name}");
        }
        for (kind, name) in [
            (SubjectDn, "CN=svc-a"),
            (SubjectDn, "O=pg_oauth tests,CN=svc-a"),
            (SubjectDn, "CN=svc-b,O=pg_oauth tests"),
            (SubjectDn, "not a DN"),
            (Dns, "svc-b.example"),
            (Dns, "spiffe://example/svc-a"),
            (Uri, "SPIFFE://example/svc-a"),
            (Ip, "10.1.2.4"),
            (Ip, "svc-a.example"),
            (Email, "svc-a.example"),
        ] {
            assert!(!cert.has_name(kind, name), "{kind:?} {name}");
        }
    }
}
