//! DPoP proofs (RFC 9449 §4): a JWS the client signs, per request, with a key whose public
//! half travels in the proof's header. Reading one checks what needs no context: its form
//! (`typ` dpop+jwt, an asymmetric `alg` we accept, a public `jwk` fit for it), its signature
//! by that key, and that the claims every proof needs are there. Whether it fits the request
//! (method, URL, age, token, nonce) and was not seen before is authn/dpop.rs.

use aws_lc_rs::digest;
use aws_lc_rs::signature;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::crypto::random::b64url;
use crate::error::{OAuthError, Result};

/// Longest proof read: a proof with a 4096-bit RSA key is about 1.5 KiB.
pub const MAX_PROOF_BYTES: usize = 8192;

/// The proof algorithms accepted (metadata's `dpop_signing_alg_values_supported`): Ed25519 is
/// EdDSA's fully-specified name (RFC 9864), which openid-client signs with.
pub const ALGORITHMS: [&str; 5] = ["ES256", "EdDSA", "Ed25519", "RS256", "PS256"];

/// Longest `jti` kept: RFC 9449 asks for at least 96 bits of randomness, which any
/// encoding fits in far less.
const MAX_JTI_BYTES: usize = 255;

/// A proof whose signature verified with the key in its header.
#[derive(Debug)]
pub struct Proof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key (base64url): what a token is
    /// bound to (`cnf.jkt`).
    pub jkt: String,
    pub jti: String,
    pub htm: String,
    pub htu: String,
    /// Seconds since the epoch.
    pub iat: i64,
    pub ath: Option<String>,
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<Value>,
    htm: Option<Value>,
    htu: Option<Value>,
    iat: Option<Value>,
    ath: Option<Value>,
    nonce: Option<Value>,
}

/// An invalid_dpop_proof error.
pub fn invalid(description: impl Into<String>) -> OAuthError {
    OAuthError::InvalidDpopProof(description.into())
}

/// Read and verify a proof; see the module's comment for what is checked here.
pub fn read(proof: &str) -> Result<Proof> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(invalid(format!(
            "the DPoP proof is longer than {MAX_PROOF_BYTES} bytes"
        )));
    }
    let mut parts = proof.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("the DPoP proof is not a JWS"));
    };
    let (alg, jwk) = read_header(header)?;
    let signature = decode(signature).ok_or_else(|| invalid("the DPoP proof is not a JWS"))?;
    let signing_input = &proof[..header.len() + 1 + payload.len()];
    if !verifies(alg, &jwk, signing_input.as_bytes(), &signature)? {
        return Err(invalid(
            "the DPoP proof's signature does not verify with its jwk",
        ));
    }
    let claims: Claims = decode(payload)
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or_else(|| invalid("the DPoP proof's claims are not a JSON object"))?;
    let jkt = thumbprint(&jwk);
    claims_of(claims, jkt)
}

fn decode(segment: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
}

/// The claims every proof needs, typed.
fn claims_of(claims: Claims, jkt: String) -> Result<Proof> {
    let text = |v: Option<Value>, name: &str| match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(invalid(format!(
            "the DPoP proof needs a string {name} claim"
        ))),
    };
    let jti = text(claims.jti, "jti")?;
    if jti.len() > MAX_JTI_BYTES {
        return Err(invalid(format!(
            "the DPoP proof's jti is longer than {MAX_JTI_BYTES} bytes"
        )));
    }
    let iat = match claims.iat {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        _ => None,
    }
    .ok_or_else(|| invalid("the DPoP proof needs a numeric iat claim"))?;
    let optional = |v: Option<Value>, name: &str| match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("the DPoP proof's {name} must be a string"))),
    };
    Ok(Proof {
        jkt,
        jti,
        htm: text(claims.htm, "htm")?,
        htu: text(claims.htu, "htu")?,
        iat,
        ath: optional(claims.ath, "ath")?,
        nonce: optional(claims.nonce, "nonce")?,
    })
}

/// A proof key, by its kind (the members RFC 7638 hashes, as the JWK has them).
enum PublicJwk {
    Ec { x: String, y: String },
    Okp { x: String },
    Rsa { n: String, e: String },
}

/// The header's algorithm and public key, after the checks RFC 9449 §4.3 makes on them.
fn read_header(header: &str) -> Result<(&'static str, PublicJwk)> {
    let raw = decode(header).and_then(|h| serde_json::from_slice::<Value>(&h).ok());
    let Some(Value::Object(raw)) = raw else {
        return Err(invalid("the DPoP proof is not a JWS"));
    };
    if !raw
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(invalid("the DPoP proof's typ must be dpop+jwt"));
    }
    if raw.contains_key("crit") {
        return Err(invalid("the DPoP proof has critical header parameters"));
    }
    let alg = raw.get("alg").and_then(Value::as_str).unwrap_or_default();
    let Some(alg) = ALGORITHMS.into_iter().find(|a| *a == alg) else {
        return Err(invalid(format!(
            "DPoP proofs signed with {} are not accepted; use one of {}",
            crate::error::quoted(alg),
            ALGORITHMS.join(", ")
        )));
    };
    let Some(Value::Object(jwk)) = raw.get("jwk") else {
        return Err(invalid(
            "the DPoP proof's header needs the public key as jwk",
        ));
    };
    const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
    if PRIVATE.iter().any(|m| jwk.contains_key(*m)) {
        return Err(invalid("the DPoP proof's jwk must be a public key"));
    }
    let member = |name: &str| jwk.get(name).and_then(Value::as_str).map(str::to_owned);
    let kty = member("kty").unwrap_or_default();
    let crv = member("crv").unwrap_or_default();
    let key = match (alg, kty.as_str(), crv.as_str()) {
        ("ES256", "EC", "P-256") => member("x")
            .zip(member("y"))
            .map(|(x, y)| PublicJwk::Ec { x, y }),
        ("EdDSA" | "Ed25519", "OKP", "Ed25519") => member("x").map(|x| PublicJwk::Okp { x }),
        ("RS256" | "PS256", "RSA", _) => member("n")
            .zip(member("e"))
            .map(|(n, e)| PublicJwk::Rsa { n, e }),
        _ => return Err(invalid("the DPoP proof's jwk does not fit its alg")),
    };
    key.map(|k| (alg, k))
        .ok_or_else(|| invalid("the DPoP proof's jwk lacks a member its kty needs"))
}

/// Whether `signature` is `alg`'s signature of `message` by `jwk`.
fn verifies(alg: &str, jwk: &PublicJwk, message: &[u8], signature: &[u8]) -> Result<bool> {
    let unusable = || invalid("the DPoP proof's jwk is not a usable public key");
    let bytes = |b64: &str| decode(b64).ok_or_else(unusable);
    Ok(match jwk {
        PublicJwk::Ec { x, y } => {
            let (x, y) = (bytes(x)?, bytes(y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err(unusable());
            }
            let point = [&[4u8][..], &x, &y].concat();
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        PublicJwk::Okp { x } => signature::UnparsedPublicKey::new(&signature::ED25519, bytes(x)?)
            .verify(message, signature)
            .is_ok(),
        PublicJwk::Rsa { n, e } => {
            let params = if alg == "PS256" {
                &signature::RSA_PSS_2048_8192_SHA256
            } else {
                &signature::RSA_PKCS1_2048_8192_SHA256
            };
            signature::RsaPublicKeyComponents {
                n: bytes(n)?,
                e: bytes(e)?,
            }
            .verify(params, message, signature)
            .is_ok()
        }
    })
}

/// The key's RFC 7638 SHA-256 thumbprint: its required members, in lexical order, as the
/// JWK has them.
fn thumbprint(jwk: &PublicJwk) -> String {
    // The members verified as base64url: nothing in them needs escaping.
    let canonical = match jwk {
        PublicJwk::Ec { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
        PublicJwk::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        PublicJwk::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
    };
    b64url(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
}

/// A URL as DPoP compares it (RFC 9449 §4.3: without query and fragment, after RFC 3986
/// syntax- and scheme-based normalization): scheme and host in lower case, the scheme's
/// default port dropped, an empty path as "/". None for what is not an http(s) URL.
pub fn normalized_url(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next()?;
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}{path}"))
}

/// The `ath` a proof presented with `token` carries: base64url(SHA-256(token)).
pub fn ath_of(token: &str) -> String {
    b64url(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}
