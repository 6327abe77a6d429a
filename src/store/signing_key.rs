//! oauth.signing_key: JWT signing keys as stored (private keys included: the table is
//! closed to everyone but the extension's functions). Their life is jose/ring.rs.

use pgrx::pg_sys::BuiltinOid::{BYTEAOID, INT4OID, JSONBOID, TEXTOID};
use pgrx::spi::SpiClient;
use serde_json::Value;

use crate::error::Result;
use crate::pg::cache::Fresh;
use crate::pg::db::Statement;

/// A key as stored.
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub private_key: Vec<u8>,
    pub active: bool,
    /// When a retired key's publication ends (Unix microseconds).
    pub expires_at_us: Option<i64>,
}

/// Every key but those retired keys whose publication has ended; `expires_at` is checked
/// again at each verification (a key ring may be older than a key's end).
static PUBLISHED_KEYS: Statement = Statement::new(
    "SELECT kid, alg, private_key, state = 'active' AS active,
            (pg_catalog.date_part('epoch', expires_at) * 1000000)::int8 AS expires_at_us
       FROM oauth.signing_key
      WHERE state <> 'retired' OR expires_at > pg_catalog.clock_timestamp()",
    &[],
);

pub fn published(spi: &SpiClient<'_>, fresh: &Fresh) -> Result<Vec<StoredKey>> {
    PUBLISHED_KEYS.query_fresh(spi, fresh, &[], |row| {
        Ok(StoredKey {
            kid: row.required("kid")?,
            alg: row.required("alg")?,
            private_key: row.required("private_key")?,
            active: row.required("active")?,
            expires_at_us: row.get_by_name("expires_at_us")?,
        })
    })
}

static INSERT: Statement = Statement::new(
    "INSERT INTO oauth.signing_key (kid, alg, private_key, public_jwk, state, activated_at)
     VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = 'active' THEN pg_catalog.now() END)
     ON CONFLICT DO NOTHING",
    &[TEXTOID, TEXTOID, BYTEAOID, JSONBOID, TEXTOID],
);

/// Store a new key in `state` ('active' or 'next'); nothing if one is there already (the
/// partial unique indexes let exactly one active and one next key per algorithm win).
pub fn insert(
    spi: &mut SpiClient<'_>,
    kid: &str,
    alg: &str,
    private_der: &[u8],
    public_jwk: Option<Value>,
    state: &str,
) -> Result<()> {
    INSERT.execute(
        spi,
        &[
            kid.into(),
            alg.into(),
            private_der.into(),
            public_jwk.map(pgrx::JsonB).into(),
            state.into(),
        ],
    )?;
    Ok(())
}

static STATES: Statement = Statement::new(
    "SELECT count(*) FILTER (WHERE state = 'active') > 0, count(*) FILTER (WHERE state = 'next') > 0
       FROM oauth.signing_key WHERE alg = $1",
    &[TEXTOID],
);

/// Which of `alg`'s keys exist: (active, next).
pub fn states(spi: &SpiClient<'_>, alg: &str) -> Result<(bool, bool)> {
    let row = STATES.query(spi, &[alg.into()])?.first();
    Ok((
        row.get::<bool>(1)?.unwrap_or(false),
        row.get::<bool>(2)?.unwrap_or(false),
    ))
}

static ACTIVE_KID: Statement = Statement::new(
    "SELECT kid FROM oauth.signing_key WHERE alg = $1 AND state = 'active'",
    &[TEXTOID],
);

pub fn active_kid(spi: &SpiClient<'_>, alg: &str) -> Result<Option<String>> {
    Ok(ACTIVE_KID
        .query(spi, &[alg.into()])?
        .first()
        .get::<String>(1)?)
}

static LOCK_ALG: Statement = Statement::new(
    "SELECT kid FROM oauth.signing_key WHERE alg = $1 AND state IN ('active', 'next') FOR UPDATE",
    &[TEXTOID],
);

/// Lock `alg`'s active and next keys until the transaction ends (rotations take turns).
pub fn lock_alg(spi: &mut SpiClient<'_>, alg: &str) -> Result<()> {
    LOCK_ALG.execute(spi, &[alg.into()])?;
    Ok(())
}

/// Retired keys stay published until every token they signed has expired: the longest
/// lifetime any client's tokens have (none without clients: no token can be in the making,
/// and a deleted client's tokens are revoked), plus the clock skew tolerated.
static RETIRE_ACTIVE: Statement = Statement::new(
    "UPDATE oauth.signing_key
        SET state = 'retired', retired_at = pg_catalog.now(),
            expires_at = pg_catalog.now() + pg_catalog.make_interval(secs => $2 +
                coalesce((SELECT max(access_token_expiration) FROM oauth.client), 0))
      WHERE alg = $1 AND state = 'active'",
    &[TEXTOID, INT4OID],
);

pub fn retire_active(spi: &mut SpiClient<'_>, alg: &str, leeway_secs: i32) -> Result<()> {
    RETIRE_ACTIVE.execute(spi, &[alg.into(), leeway_secs.into()])?;
    Ok(())
}

static PROMOTE_NEXT: Statement = Statement::new(
    "UPDATE oauth.signing_key SET state = 'active', activated_at = pg_catalog.now()
      WHERE alg = $1 AND state = 'next'
      RETURNING kid",
    &[TEXTOID],
);

/// Make `alg`'s next key the active one; its kid, if there was one.
pub fn promote_next(spi: &mut SpiClient<'_>, alg: &str) -> Result<Option<String>> {
    Ok(PROMOTE_NEXT
        .execute(spi, &[alg.into()])?
        .first()
        .get::<String>(1)?)
}

static PUBLISHED_JWKS: Statement = Statement::new(
    "SELECT public_jwk FROM oauth.signing_key
      WHERE public_jwk IS NOT NULL AND (state <> 'retired' OR expires_at > pg_catalog.now())
      ORDER BY alg, created_at",
    &[],
);

/// The public JWKs of the published keys.
pub fn published_jwks(spi: &SpiClient<'_>) -> Result<Vec<Value>> {
    let mut keys = Vec::new();
    for row in PUBLISHED_JWKS.query(spi, &[])? {
        if let Some(jwk) = row.get::<pgrx::JsonB>(1)? {
            keys.push(jwk.0);
        }
    }
    Ok(keys)
}

static SHARED_SECRETS: Statement = Statement::new(
    "SELECT kid, private_key FROM oauth.signing_key
      WHERE alg = 'HS256' AND (state <> 'retired' OR expires_at > pg_catalog.now())
      ORDER BY created_at",
    &[],
);

/// The published HS256 keys: (kid, secret).
pub fn shared_secrets(spi: &SpiClient<'_>) -> Result<Vec<(String, Vec<u8>)>> {
    let mut secrets = Vec::new();
    for row in SHARED_SECRETS.query(spi, &[])? {
        secrets.push((
            row.get::<String>(1)?.unwrap_or_default(),
            row.get::<Vec<u8>>(2)?.unwrap_or_default(),
        ));
    }
    Ok(secrets)
}
