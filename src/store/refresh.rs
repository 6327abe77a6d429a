//! Refresh tokens: rotated on every use, grouped in families; reusing a spent token
//! revokes the family and its access tokens (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
//!
//! Concurrency: a refresh marks its token used with a conditional UPDATE (so exactly one
//! of two racing requests wins; the loser is a reuse) and then holds the family row
//! FOR SHARE until it commits. Revoking a family updates that row first, so it waits for
//! refreshes in flight and then also revokes the sessions they created.

use aws_lc_rs::constant_time;
use pgrx::datum::Uuid;
use pgrx::pg_sys::BuiltinOid::{BYTEAOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID, UUIDOID};
use pgrx::spi::SpiClient;

use crate::error::{OAuthError, Result};
use crate::pg::backend;
use crate::pg::cache::Fresh;
use crate::pg::db::Statement;
use crate::pg::shmem::marks;
use crate::store::deferred::{self, Action};
use crate::store::session::{self, SessionId};

pub type FamilyId = SessionId;

static INSERT_FAMILY: Statement = Statement::new(
    "INSERT INTO oauth.refresh_family (id, client_id, created_at) VALUES ($1, $2, $3)",
    &[UUIDOID, TEXTOID, TIMESTAMPTZOID],
);

static INSERT_REFRESH: Statement = Statement::new(
    "INSERT INTO oauth.refresh_token
            (id, family_id, client_id, token_hash, scope, audience, issued_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    &[
        UUIDOID,
        UUIDOID,
        TEXTOID,
        BYTEAOID,
        TEXTARRAYOID,
        TEXTARRAYOID,
        TIMESTAMPTZOID,
        TIMESTAMPTZOID,
    ],
);

pub fn new_family(spi: &mut SpiClient<'_>, client_id: &str, now_us: i64) -> Result<FamilyId> {
    let family = crate::store::new_id();
    INSERT_FAMILY.execute(
        spi,
        &[
            Uuid::from_bytes(family).into(),
            client_id.into(),
            backend::timestamptz(now_us).into(),
        ],
    )?;
    Ok(family)
}

/// Issue a refresh token in `family`, valid for `lifetime` seconds from now.
pub fn issue(
    spi: &mut SpiClient<'_>,
    family: &FamilyId,
    client_id: &str,
    scope: &[String],
    audience: &[String],
    lifetime: i32,
    now_us: i64,
) -> Result<String> {
    let id = crate::store::new_id();
    let token = session::opaque_token(&id);
    INSERT_REFRESH.execute(
        spi,
        &[
            Uuid::from_bytes(id).into(),
            Uuid::from_bytes(*family).into(),
            client_id.into(),
            session::sha256(&token).to_vec().into(),
            scope.to_vec().into(),
            audience.to_vec().into(),
            backend::timestamptz(now_us).into(),
            backend::timestamptz(now_us + i64::from(lifetime) * 1_000_000).into(),
        ],
    )?;
    Ok(token)
}

/// What a redeemed refresh token grants.
pub struct Grant {
    pub family: FamilyId,
    pub scope: Vec<String>,
    pub audience: Vec<String>,
}

/// A refresh token as stored, found by the id inside the token.
pub struct Stored {
    pub id: SessionId,
    pub family: FamilyId,
    pub client_id: String,
    pub scope: Vec<String>,
    pub audience: Vec<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub expired: bool,
    pub used: bool,
    pub family_revoked: bool,
}

static LOAD_REFRESH: Statement = Statement::new(
    "SELECT r.family_id, r.client_id, r.token_hash, r.scope, r.audience,
            r.issued_at, r.expires_at, r.expires_at <= pg_catalog.clock_timestamp(),
            r.used_at IS NOT NULL, f.revoked_at IS NOT NULL
       FROM oauth.refresh_token r JOIN oauth.refresh_family f ON f.id = r.family_id
      WHERE r.id = $1",
    &[UUIDOID],
);

/// Find the refresh token `token` (matching its hash in constant time), read under a fresh
/// snapshot and against the clock: a revocation or expiry is seen at once, also inside a
/// REPEATABLE READ transaction that began before it.
pub fn find(spi: &SpiClient<'_>, token: &str) -> Result<Option<Stored>> {
    let Some(id) = session::opaque_token_id(token) else {
        return Ok(None);
    };
    let fresh = Fresh::take();
    let rows = LOAD_REFRESH.query_fresh(spi, &fresh, &[Uuid::from_bytes(id).into()], |row| {
        let hash: Vec<u8> = row.get(3)?.unwrap_or_default();
        if constant_time::verify_slices_are_equal(&hash, &session::sha256(token)).is_err() {
            return Ok(None);
        }
        let ts = |n| -> Result<i64> {
            Ok(row
                .get::<pgrx::datum::TimestampWithTimeZone>(n)?
                .map(backend::unix_seconds)
                .unwrap_or(0))
        };
        Ok(Some(Stored {
            id,
            family: *row
                .get::<Uuid>(1)?
                .ok_or_else(|| OAuthError::ServerError("refresh token without family".into()))?
                .as_bytes(),
            client_id: row.get(2)?.unwrap_or_default(),
            scope: row.get(4)?.unwrap_or_default(),
            audience: row.get(5)?.unwrap_or_default(),
            issued_at: ts(6)?,
            expires_at: ts(7)?,
            expired: row.get(8)?.unwrap_or(true),
            used: row.get(9)?.unwrap_or(true),
            family_revoked: row.get(10)?.unwrap_or(true),
        }))
    })?;
    Ok(rows.into_iter().next().flatten())
}

static MARK_USED: Statement = Statement::new(
    "UPDATE oauth.refresh_token SET used_at = pg_catalog.now()
      WHERE id = $1 AND used_at IS NULL
      RETURNING 1",
    &[UUIDOID],
);

static HOLD_FAMILY: Statement = Statement::new(
    "SELECT revoked_at IS NULL FROM oauth.refresh_family WHERE id = $1 FOR SHARE",
    &[UUIDOID],
);

/// Revoke a family when the request fails, as it is about to (see deferred/). Until that
/// commits the family is marked cluster-wide, so that its tokens are refused even if the
/// revocation has to wait (`redeem`).
fn revoke_family_detached(family: &FamilyId, reason: &str) {
    marks::mark(family);
    deferred::defer(Action::RevokeFamily {
        family: *family,
        reason: reason.to_owned(),
    });
}

/// What a reused refresh token's request is told: that its grant has been revoked only once
/// that committed.
pub const REUSED: &str = "the refresh token was already used";

/// What became of a revocation a request deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// Handed to a background worker that retries it (its tokens are refused meanwhile).
    Pending,
    /// Given up on, and reported (a WARNING and oauth.audit_dropped_events()).
    Lost,
}

/// The error a reused refresh token gets once its grant's revocation has `outcome`.
pub fn reuse_error(outcome: Outcome) -> OAuthError {
    OAuthError::InvalidGrant(format!(
        "{REUSED}; {}",
        match outcome {
            Outcome::Committed => "every token of its grant has been revoked",
            Outcome::Pending => "its grant is being revoked, and its tokens are refused",
            Outcome::Lost =>
                "revoking its grant failed (reported to the administrator); its tokens are refused",
        }
    ))
}

/// Exchange a refresh token presented by `client_id` for what it grants.
pub fn redeem(spi: &mut SpiClient<'_>, client_id: &str, token: &str) -> Result<Grant> {
    let stored = find(spi, token)?
        .ok_or_else(|| OAuthError::InvalidGrant("unknown refresh token".into()))?;
    if stored.client_id != client_id {
        // A valid token in the wrong hands: it has leaked, so its family is done.
        revoke_family_detached(&stored.family, "refresh token presented by another client");
        return Err(OAuthError::InvalidGrant(
            "the refresh token was issued to another client".into(),
        ));
    }
    if stored.family_revoked {
        marks::unmark(&stored.family);
        return Err(OAuthError::InvalidGrant(
            "the refresh token has been revoked".into(),
        ));
    }
    if marks::is_marked(&stored.family) {
        // A reuse was detected and its revocation has not committed yet: try again.
        revoke_family_detached(&stored.family, "refresh token reused");
        return Err(OAuthError::InvalidGrant(REUSED.into()));
    }
    if stored.expired {
        return Err(OAuthError::InvalidGrant(
            "the refresh token has expired".into(),
        ));
    }
    let reused = || {
        revoke_family_detached(&stored.family, "refresh token reused");
        OAuthError::InvalidGrant(REUSED.into())
    };
    if stored.used {
        return Err(reused());
    }
    if MARK_USED
        .execute(spi, &[Uuid::from_bytes(stored.id).into()])?
        .is_empty()
    {
        // Another request used it between our read and our update.
        return Err(reused());
    }
    let open = HOLD_FAMILY
        .execute(spi, &[Uuid::from_bytes(stored.family).into()])?
        .first()
        .get::<bool>(1)?
        .unwrap_or(false);
    if !open {
        return Err(OAuthError::InvalidGrant(
            "the refresh token has been revoked".into(),
        ));
    }
    Ok(Grant {
        family: stored.family,
        scope: stored.scope,
        audience: stored.audience,
    })
}

static REVOKE_FAMILY: Statement = Statement::new(
    "UPDATE oauth.refresh_family SET revoked_at = pg_catalog.clock_timestamp(), revoked_reason = $2
      WHERE id = $1 AND revoked_at IS NULL",
    &[UUIDOID, TEXTOID],
);

/// Revoke a family; its trigger revokes the access tokens issued from it (after this
/// statement waited for any refresh in flight, see the module comment). Returns whether
/// the family was open.
pub fn revoke_family(spi: &mut SpiClient<'_>, family: &FamilyId, reason: &str) -> Result<bool> {
    Ok(!REVOKE_FAMILY
        .execute(spi, &[Uuid::from_bytes(*family).into(), reason.into()])?
        .is_empty())
}
