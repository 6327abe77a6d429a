//! Keeping what PostgreSQL 18 logins check (pg/shmem/login.rs) equal to the tables, in two
//! ways that together lose no change:
//!
//! - Each change, when its transaction commits (pg/pending.rs): a token issued for the login
//!   audience (flow/issue.rs), a session revoked or deleted, a client (de)activated or deleted,
//!   a policy written or deleted, a signing key written or deleted, one of these tables
//!   truncated (api/login.rs's triggers).
//! - A rebuild (the login worker at start and whenever the state is missing, or
//!   `oauth.login_refresh()`): it locks every writer of these tables out, reads them under a
//!   fresh snapshot and replaces the database's state before it lets them in again. A change
//!   that committed before the lock is in what it read; one that commits after is applied
//!   on top.
//!
//! On PostgreSQL 15 and 16 there is no OAuth login: nothing is published.

use crate::config::{gucs, login as settings};
use crate::crypto::alg::JwtAlg;
use crate::error::{OAuthError, Result};
use crate::jose::keys;
use crate::pg::backend;
use crate::pg::cache::Fresh;
use crate::pg::pending;
use crate::pg::shmem::login::{self, Change, LoginToken, Overflow, PublishedKey, Snapshot};
use crate::store::{login as tables, signing_key};

fn on() -> bool {
    cfg!(feature = "pg18")
}

fn push(change: Change) {
    if on() {
        pending::push(change);
    }
}

/// A token was just issued: published if it may log in (a JWT for the login audience, with a
/// policy role, bound to nothing).
pub fn token_issued(token: &LoginToken, jwt: bool, audience: &[String], bound: bool) {
    let Some(login_audience) = settings::audience() else {
        return;
    };
    if jwt && !bound && audience.contains(&login_audience) {
        push(Change::TokenOpened(token.clone()));
    }
}

pub fn token_closed(id: [u8; 16]) {
    push(Change::TokenClosed(id));
}

/// A client or its policy was written: the role its tokens log in as now (None: they do
/// not).
pub fn client_changed(client_id: &str, role: Option<String>) {
    push(Change::Client {
        client_id: client_id.to_owned(),
        role,
    });
}

/// A signing key as written: published while it verifies tokens (next, active, or retired
/// until `expires_at`), withdrawn otherwise.
pub fn key_written(kid: &str, alg: &str, private: &[u8], expires_at_us: Option<i64>) {
    if !on() {
        return;
    }
    match published(kid, alg, private, expires_at_us) {
        Ok(key) => push(Change::KeyPublished(key)),
        // A key that cannot be parsed verifies nothing here either.
        Err(_) => push(Change::KeyWithdrawn(kid.to_owned())),
    }
}

pub fn key_deleted(kid: &str) {
    push(Change::KeyWithdrawn(kid.to_owned()));
}

/// A table was truncated: the state is dropped, and the worker rebuilds it.
pub fn reset() {
    push(Change::Reset);
}

fn published(kid: &str, alg: &str, private: &[u8], until_us: Option<i64>) -> Result<PublishedKey> {
    let parsed = JwtAlg::parse(alg)
        .ok_or_else(|| OAuthError::ServerError(format!("signing key {kid}: unknown alg")))?;
    Ok(PublishedKey {
        kid: kid.to_owned(),
        alg: alg.to_owned(),
        material: keys::public_material(parsed, private)?,
        until_us,
    })
}

/// What a rebuild did.
pub enum Rebuilt {
    /// Logins are off (no login audience) or this server is a standby: the state is dropped.
    Off(&'static str),
    Done {
        issuer: String,
        overflow: Overflow,
    },
}

/// Rebuild this database's state. The caller has set `lock_timeout`.
pub fn rebuild(spi: &mut pgrx::spi::SpiClient<'_>) -> Result<Rebuilt> {
    // SAFETY: this backend's database, set when it connected.
    let database = unsafe { pgrx::pg_sys::MyDatabaseId }.to_u32();
    if !on() {
        return Ok(Rebuilt::Off("PostgreSQL OAuth login needs PostgreSQL 18"));
    }
    let Some(audience) = settings::audience() else {
        login::forget(database);
        return Ok(Rebuilt::Off("pg_oauth.login_audience is not set"));
    };
    if backend::is_standby() {
        // Replayed changes run no trigger: a standby's state could not follow revocations.
        login::forget(database);
        return Ok(Rebuilt::Off(
            "logins with pg_oauth tokens are served by the primary only",
        ));
    }
    let issuer = gucs::issuer().ok_or_else(|| OAuthError::no_issuer("log in with tokens"))?;
    tables::lock_writers(spi)?;
    let fresh = Fresh::take();
    let mut keys = Vec::new();
    for stored in signing_key::published(spi, &fresh)? {
        if let Ok(key) = published(
            &stored.kid,
            &stored.alg,
            &stored.private_key,
            stored.expires_at_us,
        ) {
            keys.push(key);
        }
    }
    let snapshot = Snapshot {
        issuer: issuer.clone(),
        keys,
        clients: tables::clients(spi, &fresh)?,
        tokens: tables::open_tokens(spi, &fresh, &audience)?
            .into_iter()
            .map(|t| LoginToken {
                id: t.id,
                client_id: t.client_id,
                role: t.role,
                expires_at_us: t.expires_at_us,
            })
            .collect(),
    };
    let overflow = login::replace(database, &snapshot, backend::now_micros()).map_err(|()| {
        OAuthError::ServerError(
            "no room for another database's login state (8 at most), or no shared memory".into(),
        )
    })?;
    Ok(Rebuilt::Done { issuer, overflow })
}

/// Whether this database's state is built, for the issuer it has now.
pub fn ready() -> bool {
    // SAFETY: as above.
    let database = unsafe { pgrx::pg_sys::MyDatabaseId }.to_u32();
    gucs::issuer().is_some_and(|issuer| login::ready(database, &issuer))
}
