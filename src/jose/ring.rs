//! Which signing keys exist and which one signs: the per-backend ring of parsed keys, the
//! keys' life (made one rotation ahead, active, retired and published until their tokens
//! expire), and the public JWK Set.
//!
//! Parsing a private key costs far more than a signature (RSA especially), so each backend
//! keeps parsed keys. The ring is dropped whenever oauth.signing_key changes: a statement
//! trigger registers a relcache invalidation for the table, which PostgreSQL delivers to
//! every backend at its next transaction (and to this one at the next command) — exactly
//! when the change becomes visible.

use std::collections::HashMap;
use std::rc::Rc;

use pgrx::spi::SpiClient;
use serde_json::{json, Value};

use super::keys::{self, Key};
use crate::config::gucs;
use crate::crypto::alg::JwtAlg;
use crate::crypto::random::b64url;
use crate::error::{OAuthError, Result};
use crate::pg::cache::{Cache, Fresh, Source};
use crate::store::signing_key;

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

fn ring(spi: &SpiClient<'_>) -> Result<Rc<KeyRing>> {
    RING.with(|cache| cache.get(&(), |fresh| load(spi, fresh).map(Rc::new)))
}

fn load(spi: &SpiClient<'_>, fresh: &Fresh) -> Result<KeyRing> {
    let mut ring = KeyRing::default();
    for stored in signing_key::published(spi, fresh)? {
        let alg = JwtAlg::parse(&stored.alg).ok_or_else(|| {
            OAuthError::ServerError(format!("signing key {}: unknown alg", stored.kid))
        })?;
        let mut key = keys::parse_key(&stored.kid, alg, &stored.private_key)?;
        key.expires_at_us = stored.expires_at_us;
        let key = Rc::new(key);
        if stored.active {
            ring.active.insert(key.alg, key.clone());
        }
        ring.by_header.insert(key.header_b64.clone(), key.clone());
        ring.by_kid.insert(stored.kid, key);
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

fn insert_key(spi: &mut SpiClient<'_>, alg: JwtAlg, state: &str) -> Result<()> {
    let key = keys::generate(alg)?;
    signing_key::insert(
        spi,
        &key.kid,
        alg.as_str(),
        &key.private_der,
        key.public_jwk,
        state,
    )
}

/// Make sure `alg` has an active and a next key. Keys sign only after they are published:
/// a missing active key is replaced by the next one, which every verifier has had since it
/// was made, and only next keys are made here — except when `alg` has no key at all, when
/// both are made (they commit before any token signed with them leaves: see `active`).
/// Concurrent calls are safe: the partial unique indexes let exactly one active/next win.
fn ensure_keys(spi: &mut SpiClient<'_>, alg: JwtAlg) -> Result<()> {
    let (has_active, has_next) = signing_key::states(spi, alg.as_str())?;
    match (has_active, has_next) {
        (true, true) => return Ok(()),
        (false, true) => {
            signing_key::lock_alg(spi, alg.as_str())?;
            signing_key::promote_next(spi, alg.as_str())?;
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
/// no published key at all: the caller has one made and committed first (flow/issue.rs),
/// so that no token is ever signed by a key verifiers could not have fetched.
pub fn active(spi: &mut SpiClient<'_>, alg: JwtAlg) -> Result<Rc<Key>, Unpublished> {
    if let Some(key) = ring(spi)?.active.get(&alg).cloned() {
        return Ok(key);
    }
    if signing_key::states(spi, alg.as_str())? == (false, false) {
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

pub fn jwks(spi: &SpiClient<'_>) -> Result<Value> {
    Ok(json!({ "keys": signing_key::published_jwks(spi)? }))
}

/// What PostgREST verifies with: the published keys plus HS256 secrets as `oct` keys.
pub fn jwks_for_postgrest(spi: &SpiClient<'_>) -> Result<Value> {
    let mut set = jwks(spi)?;
    let keys = set["keys"].as_array_mut().expect("a key array");
    for (kid, secret) in signing_key::shared_secrets(spi)? {
        keys.push(json!({ "kty": "oct", "kid": kid, "alg": "HS256", "k": b64url(&secret) }));
    }
    Ok(set)
}

/// Make sure `alg` has an active and a next key; returns the active key's kid.
pub fn ensure(spi: &mut SpiClient<'_>, alg: JwtAlg) -> Result<String> {
    ensure_keys(spi, alg)?;
    signing_key::active_kid(spi, alg.as_str())?
        .ok_or_else(|| OAuthError::ServerError("no active key".into()))
}

/// Rotate the keys of one algorithm: next becomes active, active is retired (published
/// until every token it signed has expired), and a new next key is generated. Returns the
/// new active kid.
pub fn rotate(spi: &mut SpiClient<'_>, alg: JwtAlg) -> Result<String> {
    ensure_keys(spi, alg)?;
    signing_key::lock_alg(spi, alg.as_str())?;
    signing_key::retire_active(spi, alg.as_str(), gucs::LEEWAY.get())?;
    let kid = signing_key::promote_next(spi, alg.as_str())?
        .ok_or_else(|| OAuthError::ServerError("no next key to promote".into()))?;
    insert_key(spi, alg, "next")?;
    Ok(kid)
}
