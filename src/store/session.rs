//! Sessions: one row in oauth.session per issued access token, holding its claims and
//! only a SHA-256 of the token. Opaque tokens carry their session id, so a lookup is one
//! primary-key probe followed by a constant-time hash comparison.
//!
//! oauth.session has 16 partitions by issue time (sql/tokens.sql); a session's partition, its
//! `slot`, is a function of its id (a UUIDv7 starts with its time in milliseconds). Lookups
//! by id go straight to that partition: a statement on the partitioned table would lock all
//! sixteen (and their indexes) on every run. A session not found there is looked for in the
//! others (one issued under another pg_oauth.session_partition_interval, or before 0.3.0).

use aws_lc_rs::{constant_time, digest};
use pgrx::datum::Uuid;
use pgrx::pg_sys::BuiltinOid::{
    self as PgBuiltInOids, BYTEAOID, INT2OID, JSONBOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID,
    UUIDOID,
};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use std::sync::OnceLock;

use crate::config::gucs;
use crate::error::{OAuthError, Result};
use crate::pg::backend;
use crate::pg::cache::{Fresh, SESSION_PARTITIONS};
use crate::pg::db::Statement;
use crate::pg::index;
use crate::store::client::TokenFormat;

pub type SessionId = [u8; 16];

pub fn sha256(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn uuid_string(id: &SessionId) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

/// An opaque token: base64url of the 16-byte session id and 32 random bytes (256 bits).
pub fn opaque_token(id: &SessionId) -> String {
    let mut raw = [0u8; 48];
    raw[..16].copy_from_slice(id);
    raw[16..].copy_from_slice(&crate::crypto::random::random_bytes::<32>());
    crate::crypto::random::b64url(&raw)
}

/// The session id inside an opaque token, or `None` if it is not shaped like one.
pub fn opaque_token_id(token: &str) -> Option<SessionId> {
    use base64::Engine;
    if token.len() != 64 {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    raw.get(..16)?.try_into().ok()
}

/// The partition tokens issued at `millis` (since the epoch) go to.
pub fn slot_at(millis: i64) -> i16 {
    let interval = i64::from(gucs::SESSION_PARTITION_INTERVAL.get().max(1)) * 1000;
    millis
        .div_euclid(interval)
        .rem_euclid(SESSION_PARTITIONS as i64) as i16
}

/// The partition of session `id`: the time in its first 48 bits (UUIDv7).
pub fn slot_of(id: &SessionId) -> i16 {
    let mut millis = [0u8; 8];
    millis[2..].copy_from_slice(&id[..6]);
    slot_at(i64::from_be_bytes(millis))
}

/// The partitions to look for session `id` in: its own first, then the others. None: the
/// schema is older than 0.3.0 (a new library before `ALTER EXTENSION pg_oauth UPDATE`), whose
/// oauth.session is one table.
fn search_order(id: &SessionId) -> Option<impl Iterator<Item = usize>> {
    crate::pg::cache::ensure_registered();
    crate::pg::cache::session_rel(0)?;
    let own = slot_of(id) as usize;
    Some(std::iter::once(own).chain((0..SESSION_PARTITIONS).filter(move |&s| s != own)))
}

/// The statements against a schema older than 0.3.0, where oauth.session is one table.
mod unpartitioned {
    use super::*;

    pub static INSERT: Statement = Statement::new(
        "INSERT INTO oauth.session
                (id, client_id, token_hash, format, scope, audience, role, issued_at, expires_at, family_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[UUIDOID, TEXTOID, BYTEAOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID],
    );
    pub static LOAD: Statement = Statement::new(
        "SELECT client_id, token_hash, scope, audience, role, issued_at, expires_at,
                revoked_at IS NOT NULL, NULL::text, NULL::text, NULL::text, NULL::jsonb
           FROM oauth.session WHERE id = $1",
        &[UUIDOID],
    );
    pub static PROBE: Statement = Statement::new(
        "SELECT revoked_at IS NULL, token_hash FROM oauth.session WHERE id = $1",
        &[UUIDOID],
    );
}

/// A statement on one partition of oauth.session: `{partition}` in its SQL names it. One
/// prepared statement per partition, made on first use.
pub struct PartitionStatement {
    template: &'static str,
    args: &'static [PgBuiltInOids],
    each: OnceLock<Vec<&'static Statement>>,
}

impl PartitionStatement {
    const fn new(template: &'static str, args: &'static [PgBuiltInOids]) -> Self {
        PartitionStatement {
            template,
            args,
            each: OnceLock::new(),
        }
    }

    fn of(&'static self, slot: usize) -> &'static Statement {
        self.each.get_or_init(|| {
            (0..SESSION_PARTITIONS)
                .map(|i| {
                    let sql = self
                        .template
                        .replace("{partition}", &format!("oauth.session_p{i:02}"));
                    let statement = Statement::new(Box::leak(sql.into_boxed_str()), self.args);
                    &*Box::leak(Box::new(statement))
                })
                .collect()
        })[slot]
    }
}

pub struct NewSession<'a> {
    pub id: SessionId,
    pub client_id: &'a str,
    pub token: &'a str,
    pub format: TokenFormat,
    pub scope: &'a [String],
    pub audience: &'a [String],
    pub role: Option<&'a str>,
    /// Microseconds since the Unix epoch.
    pub issued_at_us: i64,
    pub expires_at_us: i64,
    pub family_id: Option<SessionId>,
    /// The thumbprint of the key a DPoP-bound token is bound to (RFC 9449 §6).
    pub jkt: Option<&'a str>,
    /// The thumbprint of the certificate a certificate-bound token is bound to (RFC 8705 §3).
    pub x5t: Option<&'a str>,
    /// Where an exchanged token (RFC 8693) comes from.
    pub exchange: Option<Exchange<'a>>,
}

/// An exchanged token's subject (its `sub`), actor chain (`act`) and the session of the
/// subject token it was exchanged from (whose revocation revokes it).
#[derive(Clone, Copy)]
pub struct Exchange<'a> {
    pub subject: &'a str,
    pub act: Option<&'a serde_json::Value>,
    /// None for a token another issuer signed (it has no session here).
    pub from: Option<SessionId>,
}

static INSERT_SESSION: PartitionStatement = PartitionStatement::new(
    "INSERT INTO {partition}
            (id, client_id, token_hash, format, scope, audience, role, issued_at, expires_at, family_id, slot, jkt, x5t,
             subject, act, exchanged_from)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    &[UUIDOID, TEXTOID, BYTEAOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID, INT2OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, UUIDOID],
);

pub fn insert(spi: &mut SpiClient<'_>, s: &NewSession<'_>) -> Result<()> {
    let slot = slot_of(&s.id);
    let partitioned = search_order(&s.id).is_some();
    let statement = if partitioned {
        INSERT_SESSION.of(slot as usize)
    } else {
        &unpartitioned::INSERT
    };
    let mut args = vec![
        Uuid::from_bytes(s.id).into(),
        s.client_id.into(),
        sha256(s.token).to_vec().into(),
        s.format.as_str().into(),
        s.scope.to_vec().into(),
        s.audience.to_vec().into(),
        s.role.into(),
        backend::timestamptz(s.issued_at_us).into(),
        backend::timestamptz(s.expires_at_us).into(),
        s.family_id.map(Uuid::from_bytes).into(),
    ];
    if partitioned {
        args.push(slot.into());
        args.push(s.jkt.into());
        args.push(s.x5t.into());
        let exchange = s.exchange.as_ref();
        args.push(exchange.map(|e| e.subject).into());
        args.push(
            exchange
                .and_then(|e| e.act)
                .map(|a| pgrx::JsonB(a.clone()))
                .into(),
        );
        args.push(exchange.and_then(|e| e.from).map(Uuid::from_bytes).into());
    } else if s.jkt.is_some() || s.x5t.is_some() || s.exchange.is_some() {
        return Err(OAuthError::ServerError(
            "bound tokens need the 0.3.0 schema: run ALTER EXTENSION pg_oauth UPDATE".into(),
        ));
    }
    statement.execute(spi, &args)?;
    Ok(())
}

/// A stored session. Its expiry keeps the stored precision (microseconds): a token is live
/// for its whole lifetime, not up to a second less.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub client_id: String,
    pub token_hash: Vec<u8>,
    pub scope: Vec<String>,
    pub audience: Vec<String>,
    pub role: Option<String>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix microseconds.
    pub expires_at_us: i64,
    pub revoked: bool,
    /// Bound to this DPoP key thumbprint (RFC 9449 §6).
    pub jkt: Option<String>,
    /// Bound to the certificate with this thumbprint (RFC 8705 §3).
    pub x5t: Option<String>,
    /// An exchanged token (RFC 8693): its subject and actor chain.
    pub subject: Option<String>,
    pub act: Option<serde_json::Value>,
}

static LOAD_SESSION: PartitionStatement = PartitionStatement::new(
    "SELECT client_id, token_hash, scope, audience, role, issued_at, expires_at,
            revoked_at IS NOT NULL, jkt, x5t, subject, act
       FROM {partition} WHERE id = $1",
    &[UUIDOID],
);

/// A session by id, read under a fresh snapshot (a revocation committed before this call
/// is seen, and so is a session this transaction just created).
pub fn load(spi: &SpiClient<'_>, id: &SessionId) -> Result<Option<Session>> {
    let fresh = Fresh::take();
    let Some(slots) = search_order(id) else {
        return load_from(spi, &fresh, &unpartitioned::LOAD, id);
    };
    for slot in slots {
        if let Some(session) = load_from(spi, &fresh, LOAD_SESSION.of(slot), id)? {
            return Ok(Some(session));
        }
    }
    Ok(None)
}

fn load_from(
    spi: &SpiClient<'_>,
    fresh: &Fresh,
    statement: &'static Statement,
    id: &SessionId,
) -> Result<Option<Session>> {
    let mut rows = statement.query_fresh(spi, fresh, &[Uuid::from_bytes(*id).into()], |row| {
        let ts = |n| -> Result<i64> {
            Ok(row
                .get::<pgrx::datum::TimestampWithTimeZone>(n)?
                .map(backend::unix_micros)
                .unwrap_or(0))
        };
        Ok(Session {
            id: *id,
            client_id: row.get(1)?.unwrap_or_default(),
            token_hash: row.get(2)?.unwrap_or_default(),
            scope: row.get(3)?.unwrap_or_default(),
            audience: row.get(4)?.unwrap_or_default(),
            role: row.get(5)?,
            issued_at: ts(6)?.div_euclid(1_000_000),
            expires_at_us: ts(7)?,
            revoked: row.get(8)?.unwrap_or(true),
            jkt: row.get(9)?,
            x5t: row.get(10)?,
            subject: row.get(11)?,
            act: row.get::<pgrx::JsonB>(12)?.map(|j| j.0),
        })
    })?;
    Ok(rows.pop())
}

/// Whether `token` is the one its session was issued for (constant time).
fn hash_matches(stored: &[u8], token: &str) -> bool {
    constant_time::verify_slices_are_equal(stored, &sha256(token)).is_ok()
}

/// The session of an opaque token, whatever its state: it must exist and match the
/// token's hash (compared in constant time).
pub fn find_opaque(spi: &SpiClient<'_>, token: &str) -> Result<Option<Session>> {
    let Some(id) = opaque_token_id(token) else {
        return Ok(None);
    };
    Ok(load(spi, &id)?.filter(|s| hash_matches(&s.token_hash, token)))
}

/// The live session of an opaque token.
pub fn verify_opaque(spi: &SpiClient<'_>, token: &str, now_us: i64) -> Result<Session> {
    if opaque_token_id(token).is_none() {
        return Err(OAuthError::InvalidToken("malformed access token".into()));
    }
    let session = find_opaque(spi, token)?
        .ok_or_else(|| OAuthError::InvalidToken("unknown access token".into()))?;
    check_live(&session, now_us)?;
    Ok(session)
}

/// What the revocation probe found for a JWT's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// No session with this id, or one issued for another token (a forgery around a live
    /// jti): either way not a token of ours.
    Unknown,
    Revoked,
    Open,
}

/// Why a token whose session was revoked or is unknown may not be used: the one wording
/// for auth_verify (opaque and JWT) and PostgREST's pre-request check.
pub const REVOKED: &str = "access token has been revoked";
pub const UNKNOWN: &str = "unknown access token";

impl Probe {
    /// The revocation check of a JWT: Ok while its session is open.
    pub fn check(self) -> Result<()> {
        match self {
            Probe::Open => Ok(()),
            Probe::Revoked => Err(OAuthError::InvalidToken(REVOKED.into())),
            Probe::Unknown => Err(OAuthError::InvalidToken(UNKNOWN.into())),
        }
    }

    fn of(found: Option<(bool, Vec<u8>)>, token: &str) -> Probe {
        match found {
            Some((_, hash)) if !hash_matches(&hash, token) => Probe::Unknown,
            Some((true, _)) => Probe::Open,
            Some((false, _)) => Probe::Revoked,
            None => Probe::Unknown,
        }
    }
}

static PROBE_SESSION: PartitionStatement = PartitionStatement::new(
    "SELECT revoked_at IS NULL, token_hash FROM {partition} WHERE id = $1",
    &[UUIDOID],
);

/// The JWT revocation check: the session `id` exists, was issued for exactly `token` (its
/// SHA-256 equals the stored hash, so a token minted around a live jti is refused), and is
/// not revoked. Reads under a fresh snapshot. Runs for every verified JWT, so it probes the
/// primary key directly — no SPI, no executor — where it can, else through SPI.
pub fn probe(id: &SessionId, token: &str) -> Result<Probe> {
    let fresh = Fresh::take();
    let Some(slots) = search_order(id) else {
        return Ok(Probe::of(
            probe_sql(&unpartitioned::PROBE, id, &fresh)?,
            token,
        ));
    };
    for slot in slots {
        let found = match probe_index(slot, id, &fresh) {
            Lookup::Found(found) => Some(found),
            Lookup::Absent => None,
            Lookup::NeedsSql => probe_sql(PROBE_SESSION.of(slot), id, &fresh)?,
        };
        if found.is_some() {
            return Ok(Probe::of(found, token));
        }
    }
    Ok(Probe::Unknown)
}

/// (open, token hash) of session `id`, through SPI.
fn probe_sql(
    statement: &'static Statement,
    id: &SessionId,
    fresh: &Fresh,
) -> Result<Option<(bool, Vec<u8>)>> {
    let found = crate::pg::db::with_safe_search_path(|| {
        Spi::connect(|spi| {
            statement.query_fresh(spi, fresh, &[Uuid::from_bytes(*id).into()], |row| {
                Ok((
                    row.get::<bool>(1)?.unwrap_or(false),
                    row.get::<Vec<u8>>(2)?.unwrap_or_default(),
                ))
            })
        })
    })?;
    Ok(found.into_iter().next())
}

/// What a direct probe of a partition's primary key found.
enum Lookup {
    /// (open, token hash) of the session.
    Found((bool, Vec<u8>)),
    /// No such session in this partition.
    Absent,
    /// The probe cannot run here (the partition's relations are not known yet): use SQL.
    NeedsSql,
}

/// Session `id` in partition `slot`, by a direct primary-key probe (pg/index.rs).
fn probe_index(slot: usize, id: &SessionId, fresh: &Fresh) -> Lookup {
    let Some(rel) = crate::pg::cache::session_rel(slot) else {
        return Lookup::NeedsSql;
    };
    let last = rel.revoked_at.max(rel.token_hash);
    let probed = index::probe_by_uuid(rel.table, rel.primary_key, id, fresh, last, |row| {
        (
            row.is_null(rel.revoked_at),
            row.bytes(rel.token_hash).unwrap_or_default(),
        )
    });
    match probed {
        Some(found) => Lookup::Found(found),
        None => Lookup::Absent,
    }
}

/// Open and not expired at `now_us` (Unix microseconds).
pub fn check_live(session: &Session, now_us: i64) -> Result<()> {
    if session.revoked {
        return Err(OAuthError::InvalidToken(REVOKED.into()));
    }
    if now_us >= session.expires_at_us {
        return Err(OAuthError::InvalidToken("access token has expired".into()));
    }
    Ok(())
}

static HOLD_SESSION: PartitionStatement = PartitionStatement::new(
    "SELECT revoked_at IS NULL FROM {partition} WHERE id = $1 FOR SHARE",
    &[UUIDOID],
);

/// Lock session `id` against revocation until this transaction ends, and say whether it is
/// still open: a token exchanged from it (RFC 8693) then commits before a revocation of it,
/// which revokes the exchanged one too, or after, and is refused here. Waits at most
/// `lock_timeout` for a revocation in progress.
pub fn hold_open(spi: &mut SpiClient<'_>, id: &SessionId) -> Result<bool> {
    let Some(slots) = search_order(id) else {
        return Ok(false);
    };
    for slot in slots {
        // A locking read: run as a statement that writes (SPI refuses it read-only).
        let table = HOLD_SESSION
            .of(slot)
            .execute(spi, &[Uuid::from_bytes(*id).into()])?;
        if let Some(row) = table.into_iter().next() {
            return Ok(row.get::<bool>(1)?.unwrap_or(false));
        }
    }
    Ok(false)
}

static REVOKE_SESSION: Statement = Statement::new(
    "UPDATE oauth.session SET revoked_at = pg_catalog.clock_timestamp(), revoked_reason = $2
      WHERE id = $1 AND revoked_at IS NULL",
    &[UUIDOID, TEXTOID],
);

/// Close a session, saying why; returns whether it was open.
pub fn revoke(spi: &mut SpiClient<'_>, id: &SessionId, reason: &str) -> Result<bool> {
    let table = REVOKE_SESSION.execute(spi, &[Uuid::from_bytes(*id).into(), reason.into()])?;
    Ok(!table.is_empty())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn session_ids_are_uuidv7_and_time_ordered() {
        let a = crate::store::new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = crate::store::new_id();
        let ua = uuid::Uuid::from_bytes(a);
        assert_eq!(ua.get_version_num(), 7);
        assert_eq!(ua.get_variant(), uuid::Variant::RFC4122);
        assert!(a[..6] < b[..6], "later ids sort later");
        assert_ne!(a[6..], b[6..]);
        let (secs, _) = ua.get_timestamp().unwrap().to_unix();
        let now = backend::now_micros() as u64 / 1_000_000;
        assert!(now.abs_diff(secs) <= 1);
    }

    #[test]
    fn opaque_tokens_carry_their_session_id() {
        let id = crate::store::new_id();
        let token = opaque_token(&id);
        assert_eq!(token.len(), 64);
        assert_eq!(opaque_token_id(&token), Some(id));
        assert_eq!(opaque_token_id("short"), None);
        assert_ne!(opaque_token(&id), token, "256 fresh random bits each time");
    }
}
