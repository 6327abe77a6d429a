//! JWT signing keys: generation inside the database, the per-backend cache of parsed keys,
//! rotation, and the public JWK Set.
//!
//! Parsing a private key costs far more than a signature (RSA especially), so each backend
//! keeps parsed keys. The cache is dropped whenever oauth.signing_key changes: a statement
//! trigger registers a relcache invalidation for the table, which PostgreSQL delivers to
//! every backend at its next transaction (and to this one at the next command) — exactly
//! when the change becomes visible.

use std::collections::HashMap;
use std::rc::Rc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaEncoding, RsaKeyPair,
};
use pgrx::pg_sys::BuiltinOid::{BYTEAOID, INT4OID, JSONBOID, TEXTOID};
use pgrx::spi::SpiClient;
use serde_json::{json, Value};

use crate::config::gucs;
use crate::crypto::alg::JwtAlg;
use crate::crypto::secret::{b64url, random_bytes};
use crate::error::{OAuthError, Result};
use crate::pg::cache::{Cache, Fresh, Source};
use crate::pg::db::Statement;

/// The RSA signature encoding `alg` names (PS256: PSS, RS256: PKCS #1 v1.5).
fn rsa_encoding(alg: JwtAlg) -> &'static dyn RsaEncoding {
    match alg {
        JwtAlg::PS256 => &signature::RSA_PSS_SHA256,
        _ => &signature::RSA_PKCS1_SHA256,
    }
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
    Hmac(Box<hmac::Key>),
}

enum Verifier {
    Public(ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

/// A parsed key, ready to sign and verify.
pub struct Key {
    pub alg: JwtAlg,
    /// base64url of the JOSE header this key signs with.
    pub header_b64: String,
    /// A retired key's end of publication (Unix microseconds): no token verifies with it
    /// afterwards.
    pub expires_at_us: Option<i64>,
    signer: Signer,
    verifier: Verifier,
}

impl Key {
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = |_| OAuthError::ServerError("signing failed".into());
        Ok(match &self.signer {
            Signer::Ecdsa(kp) => kp
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Signer::Ed25519(kp) => kp.sign(message).as_ref().to_vec(),
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(
                    rsa_encoding(self.alg),
                    &SystemRandom::new(),
                    message,
                    &mut sig,
                )
                .map_err(failed)?;
                sig
            }
            Signer::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
        })
    }

    /// Whether tokens signed by this key may still verify at `now_us`.
    pub fn published_at(&self, now_us: i64) -> bool {
        self.expires_at_us.is_none_or(|end| now_us < end)
    }

    /// Constant-time for HMAC; public-key verification has no secret to leak.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.verifier {
            Verifier::Public(key) => key.verify_sig(message, sig).is_ok(),
            Verifier::Hmac(key) => hmac::verify(key, message, sig).is_ok(),
        }
    }
}

pub(crate) fn parse_key(kid: &str, alg: JwtAlg, private: &[u8]) -> Result<Key> {
    let bad = |what: &str| OAuthError::ServerError(format!("signing key {kid}: {what}"));
    let (signer, verifier) = match alg {
        JwtAlg::ES256 => {
            let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, private)
                .map_err(|_| bad("invalid P-256 key"))?;
            let public = ParsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                kp.public_key().as_ref(),
            )
            .map_err(|_| bad("invalid P-256 public key"))?;
            (Signer::Ecdsa(kp), Verifier::Public(public))
        }
        JwtAlg::EdDSA => {
            let kp = Ed25519KeyPair::from_pkcs8(private).map_err(|_| bad("invalid Ed25519 key"))?;
            let public = ParsedPublicKey::new(&signature::ED25519, kp.public_key().as_ref())
                .map_err(|_| bad("invalid Ed25519 public key"))?;
            (Signer::Ed25519(kp), Verifier::Public(public))
        }
        JwtAlg::RS256 | JwtAlg::PS256 => {
            let kp = RsaKeyPair::from_pkcs8(private).map_err(|_| bad("invalid RSA key"))?;
            let params = if alg == JwtAlg::PS256 {
                &signature::RSA_PSS_2048_8192_SHA256
            } else {
                &signature::RSA_PKCS1_2048_8192_SHA256
            };
            let public = ParsedPublicKey::new(params, kp.public_key().as_ref())
                .map_err(|_| bad("invalid RSA public key"))?;
            (Signer::Rsa(kp), Verifier::Public(public))
        }
        JwtAlg::HS256 => {
            if private.len() < 32 {
                return Err(bad("HS256 secret shorter than 256 bits"));
            }
            let key = Box::new(hmac::Key::new(hmac::HMAC_SHA256, private));
            (Signer::Hmac(key.clone()), Verifier::Hmac(key))
        }
    };
    let header = json!({ "alg": alg.as_str(), "kid": kid, "typ": "at+jwt" });
    Ok(Key {
        header_b64: b64url(header.to_string().as_bytes()),
        expires_at_us: None,
        alg,
        signer,
        verifier,
    })
}

/// A newly generated key: its kid, private key and public JWK.
pub struct NewKey {
    pub kid: String,
    pub private_der: Vec<u8>,
    pub public_jwk: Option<Value>,
}

/// RFC 7638 JWK thumbprint (SHA-256) of a public key's required members.
fn thumbprint(required: &Value) -> Result<String> {
    let failed = |_| OAuthError::ServerError("a new key has no JWK thumbprint".into());
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(required.clone()).map_err(failed)?;
    jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .map_err(|_| OAuthError::ServerError("a new key has no JWK thumbprint".into()))
}

pub fn generate(alg: JwtAlg) -> Result<NewKey> {
    let failed = |_| OAuthError::ServerError(format!("{} key generation failed", alg.as_str()));
    let (private_der, required) = match alg {
        JwtAlg::ES256 => {
            let kp = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(failed)?;
            let point = kp.public_key().as_ref();
            let (x, y) = point[1..].split_at(32);
            let der = kp.to_pkcs8v1().map_err(failed)?.as_ref().to_vec();
            (
                der,
                json!({ "crv": "P-256", "kty": "EC", "x": b64url(x), "y": b64url(y) }),
            )
        }
        JwtAlg::EdDSA => {
            let kp = Ed25519KeyPair::generate().map_err(failed)?;
            let der = kp.to_pkcs8().map_err(failed)?.as_ref().to_vec();
            let x = b64url(kp.public_key().as_ref());
            (der, json!({ "crv": "Ed25519", "kty": "OKP", "x": x }))
        }
        JwtAlg::RS256 | JwtAlg::PS256 => {
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().map_err(failed)?;
            let public = kp.public_key();
            let n = b64url(public.modulus().big_endian_without_leading_zero());
            let e = b64url(public.exponent().big_endian_without_leading_zero());
            (
                der.as_ref().to_vec(),
                json!({ "e": e, "kty": "RSA", "n": n }),
            )
        }
        JwtAlg::HS256 => {
            return Ok(NewKey {
                kid: b64url(&random_bytes::<16>()),
                private_der: random_bytes::<32>().to_vec(),
                public_jwk: None,
            });
        }
    };
    let kid = thumbprint(&required)?;
    let mut jwk = required;
    let obj = jwk.as_object_mut().expect("a JSON object");
    obj.insert("kid".into(), Value::String(kid.clone()));
    obj.insert("alg".into(), Value::String(alg.as_str().into()));
    obj.insert("use".into(), Value::String("sig".into()));
    Ok(NewKey {
        kid,
        private_der,
        public_jwk: Some(jwk),
    })
}

/// The keys that sign, will sign, or signed tokens that may still be valid.
#[derive(Default)]
pub struct KeyRing {
    by_kid: HashMap<String, Rc<Key>>,
    /// Our own JWS headers, byte for byte: a token whose header segment is one of these
    /// was signed (if at all) by that key, so verification skips parsing the header.
    by_header: HashMap<String, Rc<Key>>,
    active: HashMap<JwtAlg, Rc<Key>>,
}

thread_local! {
    /// Parsed keys (see cache.rs: dropped on any change to oauth.signing_key).
    static RING: Cache<(), Rc<KeyRing>> = Cache::new(Source::Keys, 1, |_| true);
}

/// Every key but those retired keys whose publication has ended; `expires_at` is checked
/// again at each verification (a key ring may be older than a key's end).
static LOAD_KEYS: Statement = Statement::new(
    "SELECT kid, alg, private_key, state = 'active',
            (pg_catalog.date_part('epoch', expires_at) * 1000000)::int8
       FROM oauth.signing_key
      WHERE state <> 'retired' OR expires_at > pg_catalog.clock_timestamp()",
    &[],
);

fn ring(spi: &SpiClient<'_>) -> Result<Rc<KeyRing>> {
    RING.with(|cache| cache.get(&(), |fresh| load(spi, fresh).map(Rc::new)))
}

fn load(spi: &SpiClient<'_>, fresh: &Fresh) -> Result<KeyRing> {
    let mut ring = KeyRing::default();
    let keys = LOAD_KEYS.query_fresh(spi, fresh, &[], |row| {
        let kid: String = row.get(1)?.unwrap_or_default();
        let alg = row
            .get::<String>(2)?
            .as_deref()
            .and_then(JwtAlg::parse)
            .ok_or_else(|| OAuthError::ServerError(format!("signing key {kid}: unknown alg")))?;
        let private: Vec<u8> = row.get(3)?.unwrap_or_default();
        let active = row.get::<bool>(4)?.unwrap_or(false);
        let mut key = parse_key(&kid, alg, &private)?;
        key.expires_at_us = row.get(5)?;
        Ok((kid, active, Rc::new(key)))
    })?;
    for (kid, active, key) in keys {
        if active {
            ring.active.insert(key.alg, key.clone());
        }
        ring.by_header.insert(key.header_b64.clone(), key.clone());
        ring.by_kid.insert(kid, key);
    }
    Ok(ring)
}

/// The key that signed a token with this header segment, from the cache alone (no
/// database access); `None` when the cache is stale or the header is not one of ours.
pub fn by_header(header_b64: &str) -> Option<Rc<Key>> {
    RING.with(|cache| cache.peek(&()))
        .and_then(|ring| ring.by_header.get(header_b64).cloned())
}

/// The key with this kid, if it is still published (next, active, or retired and unexpired).
pub fn by_kid(spi: &SpiClient<'_>, kid: &str) -> Result<Option<Rc<Key>>> {
    Ok(ring(spi)?.by_kid.get(kid).cloned())
}

static INSERT_KEY: Statement = Statement::new(
    "INSERT INTO oauth.signing_key (kid, alg, private_key, public_jwk, state, activated_at)
     VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = 'active' THEN pg_catalog.now() END)
     ON CONFLICT DO NOTHING",
    &[TEXTOID, TEXTOID, BYTEAOID, JSONBOID, TEXTOID],
);

fn insert_key(spi: &mut SpiClient<'_>, alg: JwtAlg, state: &str) -> Result<()> {
    let key = generate(alg)?;
    INSERT_KEY.execute(
        spi,
        &[
            key.kid.as_str().into(),
            alg.as_str().into(),
            key.private_der.into(),
            key.public_jwk.map(pgrx::JsonB).into(),
            state.into(),
        ],
    )?;
    Ok(())
}

static HAS_STATE: Statement = Statement::new(
    "SELECT count(*) FILTER (WHERE state = 'active') > 0, count(*) FILTER (WHERE state = 'next') > 0
       FROM oauth.signing_key WHERE alg = $1",
    &[TEXTOID],
);

/// Which of `alg`'s keys exist: (active, next).
fn key_states(spi: &SpiClient<'_>, alg: JwtAlg) -> Result<(bool, bool)> {
    let row = HAS_STATE.query(spi, &[alg.as_str().into()])?.first();
    Ok((
        row.get::<bool>(1)?.unwrap_or(false),
        row.get::<bool>(2)?.unwrap_or(false),
    ))
}

/// Make sure `alg` has an active and a next key. Keys sign only after they are published:
/// a missing active key is replaced by the next one, which every verifier has had since it
/// was made, and only next keys are made here — except when `alg` has no key at all, when
/// both are made (they commit before any token signed with them leaves: see `active`).
/// Concurrent calls are safe: the partial unique indexes let exactly one active/next win.
fn ensure_keys(spi: &mut SpiClient<'_>, alg: JwtAlg) -> Result<()> {
    let (has_active, has_next) = key_states(spi, alg)?;
    match (has_active, has_next) {
        (true, true) => return Ok(()),
        (false, true) => {
            LOCK_ALG.execute(spi, &[alg.as_str().into()])?;
            PROMOTE_NEXT.execute(spi, &[alg.as_str().into()])?;
            insert_key(spi, alg, "next")?;
        }
        (true, false) => insert_key(spi, alg, "next")?,
        (false, false) => {
            insert_key(spi, alg, "active")?;
            insert_key(spi, alg, "next")?;
        }
    }
    RING.with(Cache::clear);
    Ok(())
}

/// The key that signs new tokens with `alg`: the active one, or the published next one
/// promoted when the active key is gone (deleted, say). `Err(NotPublished)` when `alg` has
/// no published key at all: the caller has one made and committed first (flow/token.rs),
/// so that no token is ever signed by a key verifiers could not have fetched.
pub fn active(spi: &mut SpiClient<'_>, alg: JwtAlg) -> Result<Rc<Key>, Unpublished> {
    if let Some(key) = ring(spi)?.active.get(&alg).cloned() {
        return Ok(key);
    }
    if key_states(spi, alg)? == (false, false) {
        return Err(Unpublished::NoKey);
    }
    ensure_keys(spi, alg)?;
    ring(spi)?.active.get(&alg).cloned().ok_or_else(|| {
        OAuthError::ServerError(format!("no active {} signing key", alg.as_str())).into()
    })
}

/// Why `active` has no key to sign with.
pub enum Unpublished {
    /// The algorithm has no key at all: make them in a transaction of their own first.
    NoKey,
    Failed(OAuthError),
}

impl From<OAuthError> for Unpublished {
    fn from(err: OAuthError) -> Self {
        Unpublished::Failed(err)
    }
}

impl From<pgrx::spi::SpiError> for Unpublished {
    fn from(err: pgrx::spi::SpiError) -> Self {
        Unpublished::Failed(err.into())
    }
}

/// The algorithm a client's JWTs are signed with.
pub fn alg_for(client_alg: Option<&str>) -> JwtAlg {
    client_alg
        .and_then(JwtAlg::parse)
        .unwrap_or_else(|| gucs::DEFAULT_JWT_ALG.get())
}

/// The algorithm a SQL caller names, or `pg_oauth.default_jwt_alg`.
pub fn alg_or_default(alg: Option<&str>) -> Result<JwtAlg> {
    match alg {
        None => Ok(gucs::DEFAULT_JWT_ALG.get()),
        Some(name) => JwtAlg::parse(name).ok_or_else(|| {
            OAuthError::InvalidRequest(format!(
                "unsupported signing algorithm {}; use one of {}",
                crate::error::quoted(name),
                JwtAlg::ALL.map(JwtAlg::as_str).join(", ")
            ))
        }),
    }
}

static ACTIVE_KID: Statement = Statement::new(
    "SELECT kid FROM oauth.signing_key WHERE alg = $1 AND state = 'active'",
    &[TEXTOID],
);

static LOCK_ALG: Statement = Statement::new(
    "SELECT kid FROM oauth.signing_key WHERE alg = $1 AND state IN ('active', 'next') FOR UPDATE",
    &[TEXTOID],
);
static RETIRE_ACTIVE: Statement = Statement::new(
    "UPDATE oauth.signing_key
        SET state = 'retired', retired_at = pg_catalog.now(),
            expires_at = pg_catalog.now() + pg_catalog.make_interval(secs => $2 +
                coalesce((SELECT max(access_token_expiration) FROM oauth.client), 3600))
      WHERE alg = $1 AND state = 'active'",
    &[TEXTOID, INT4OID],
);
static PROMOTE_NEXT: Statement = Statement::new(
    "UPDATE oauth.signing_key SET state = 'active', activated_at = pg_catalog.now()
      WHERE alg = $1 AND state = 'next'
      RETURNING kid",
    &[TEXTOID],
);

static PUBLISHED: Statement = Statement::new(
    "SELECT public_jwk FROM oauth.signing_key
      WHERE public_jwk IS NOT NULL AND (state <> 'retired' OR expires_at > pg_catalog.now())
      ORDER BY alg, created_at",
    &[],
);

pub fn jwks(spi: &SpiClient<'_>) -> Result<Value> {
    let mut keys = Vec::new();
    for row in PUBLISHED.query(spi, &[])? {
        if let Some(jwk) = row.get::<pgrx::JsonB>(1)? {
            keys.push(jwk.0);
        }
    }
    Ok(json!({ "keys": keys }))
}

static SHARED_SECRETS: Statement = Statement::new(
    "SELECT kid, private_key FROM oauth.signing_key
      WHERE alg = 'HS256' AND (state <> 'retired' OR expires_at > pg_catalog.now())
      ORDER BY created_at",
    &[],
);

/// What PostgREST verifies with: the published keys plus HS256 secrets as `oct` keys.
pub fn jwks_for_postgrest(spi: &SpiClient<'_>) -> Result<Value> {
    let mut set = jwks(spi)?;
    let keys = set["keys"].as_array_mut().expect("a key array");
    for row in SHARED_SECRETS.query(spi, &[])? {
        let kid: String = row.get(1)?.unwrap_or_default();
        let secret: Vec<u8> = row.get(2)?.unwrap_or_default();
        keys.push(json!({ "kty": "oct", "kid": kid, "alg": "HS256", "k": b64url(&secret) }));
    }
    Ok(set)
}

/// Make sure `alg` has an active and a next key; returns the active key's kid.
pub fn ensure(spi: &mut SpiClient<'_>, alg: JwtAlg) -> Result<String> {
    ensure_keys(spi, alg)?;
    let kid = ACTIVE_KID
        .query(spi, &[alg.as_str().into()])?
        .first()
        .get::<String>(1)?;
    kid.ok_or_else(|| OAuthError::ServerError("no active key".into()))
}

/// Rotate the keys of one algorithm: next becomes active, active is retired (published
/// until every token it signed has expired), and a new next key is generated. Returns the
/// new active kid.
pub fn rotate(spi: &mut SpiClient<'_>, alg: JwtAlg) -> Result<String> {
    ensure_keys(spi, alg)?;
    LOCK_ALG.execute(spi, &[alg.as_str().into()])?;
    RETIRE_ACTIVE.execute(spi, &[alg.as_str().into(), gucs::LEEWAY.get().into()])?;
    let kid = PROMOTE_NEXT
        .execute(spi, &[alg.as_str().into()])?
        .first()
        .get::<String>(1)?
        .ok_or_else(|| OAuthError::ServerError("no next key to promote".into()))?;
    insert_key(spi, alg, "next")?;
    Ok(kid)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_for_every_alg() {
        for alg in JwtAlg::ALL {
            let new = generate(alg).unwrap();
            let key = parse_key(&new.kid, alg, &new.private_der).unwrap();
            let sig = key.sign(b"header.payload").unwrap();
            assert!(key.verify(b"header.payload", &sig), "{alg:?}");
            assert!(!key.verify(b"header.payloaD", &sig), "{alg:?}");
            match new.public_jwk {
                Some(jwk) => {
                    assert_eq!(jwk["kid"], new.kid.as_str());
                    assert_eq!(jwk["alg"], alg.as_str());
                    assert_eq!(jwk["use"], "sig");
                    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                        assert!(jwk.get(private).is_none(), "{alg:?} leaks {private}");
                    }
                }
                None => assert_eq!(alg, JwtAlg::HS256),
            }
        }
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1
        let jwk = json!({
            "e": "AQAB",
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
