//! The records of failed client authentications: the audit trail (`oauth.auth_failure`),
//! the lockout rows per client id and source (`oauth.client_lockout`) and the refusals of
//! throttled sources (`oauth.source_throttle`). What counts as a failure and when a caller
//! is refused is authn/attempts.rs.
//!
//! A failure is deferred while the request runs and written where it survives the
//! request's failure (see deferred.rs): over HTTP in the request's own transaction, from
//! SQL by a background worker.
//!
//! The lockout state is cached per backend and invalidated like the client cache, so the
//! steady-state path runs no extra SQL.

use pgrx::pg_sys::BuiltinOid::{INT4OID, INT8OID, TEXTOID};
use pgrx::spi::SpiClient;

use serde::{Deserialize, Serialize};

use crate::config::gucs;
use crate::error::Result;
use crate::pg::cache::{Cache, Source};
use crate::pg::db::Statement;

/// Longest client id and source kept (ids longer than this cannot exist: see oauth.client).
pub const MAX_ID_CHARS: usize = 255;
pub const MAX_SOURCE_CHARS: usize = 100;

/// A failed authentication, to be recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub client_id: String,
    /// The caller's address, as recorded in the audit trail.
    pub source: String,
    /// What the lockout counts by (see `group_of`).
    pub group: String,
    pub reason: String,
    /// How many guesses it counts toward a lockout: one per secret verified (a Basic
    /// header that reads several ways verifies each reading); none for an inactive
    /// client's correct credentials.
    pub guesses: i32,
    pub lockout: Lockout,
}

/// Requests refused because their source was throttled: one row per source and window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throttled {
    pub source: String,
    /// Seconds since the epoch.
    pub window_start: i64,
    pub refused: i64,
}

/// The lockout settings of the failing request (the worker that records a failure runs
/// with the database's defaults, not the caller's settings).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Lockout {
    pub threshold: i32,
    pub window_secs: i32,
    pub duration_secs: i32,
}

impl Lockout {
    pub fn current() -> Lockout {
        Lockout {
            threshold: gucs::LOCKOUT_THRESHOLD.get(),
            window_secs: gucs::LOCKOUT_WINDOW.get(),
            duration_secs: gucs::LOCKOUT_DURATION.get(),
        }
    }
}

/// What this backend knows of a (client, source) lockout row.
#[derive(Debug, Clone, Copy)]
pub struct State {
    pub failures: i32,
    pub locked_until_us: Option<i64>,
}

const CACHE_CAPACITY: usize = 10_000;

thread_local! {
    /// (client id, source) -> its lockout row (None: no row); see cache.rs.
    static STATES: Cache<(String, String), Option<State>> =
        Cache::new(Source::Lockouts, CACHE_CAPACITY, |_| true);
}

pub fn truncate(value: &str, max_chars: usize) -> String {
    match value.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

static LOAD_STATE: Statement = Statement::new(
    "SELECT failures, pg_catalog.date_part('epoch', locked_until)::float8
       FROM oauth.client_lockout WHERE client_id = $1 AND source = $2",
    &[TEXTOID, TEXTOID],
);

/// The lockout row of `client_id` for `source` (None: no row), from the cache.
pub fn lockout_state(spi: &SpiClient<'_>, client_id: &str, source: &str) -> Result<Option<State>> {
    let key = (client_id.to_owned(), source.to_owned());
    STATES.with(|cache| {
        cache.get(&key, |fresh| {
            let rows =
                LOAD_STATE.query_fresh(spi, fresh, &[client_id.into(), source.into()], |row| {
                    Ok(State {
                        failures: row.get::<i32>(1)?.unwrap_or(0),
                        locked_until_us: row.get::<f64>(2)?.map(|s| (s * 1e6) as i64),
                    })
                })?;
            Ok(rows.into_iter().next())
        })
    })
}

static CLEAR: Statement = Statement::new(
    "DELETE FROM oauth.client_lockout WHERE client_id = $1 AND source = $2",
    &[TEXTOID, TEXTOID],
);

/// Forgive the failures counted against `client_id` from `source`.
pub fn clear_failures(spi: &mut SpiClient<'_>, client_id: &str, source: &str) -> Result<()> {
    CLEAR.execute(spi, &[client_id.into(), source.into()])?;
    Ok(())
}

/// Count a failure toward a lockout; returns the lockout's end when this failure reached
/// the threshold. A window that has passed starts again at this failure.
static COUNT_FAILURE: Statement = Statement::new(
    "INSERT INTO oauth.client_lockout AS l (client_id, source, failures, window_start, locked_until)
     VALUES ($1, $2, $6, pg_catalog.now(),
             CASE WHEN $6 >= $3 THEN pg_catalog.now() + pg_catalog.make_interval(secs => $5) END)
     ON CONFLICT (client_id, source) DO UPDATE SET
         failures = CASE WHEN l.window_start < pg_catalog.now() - pg_catalog.make_interval(secs => $4)
                         THEN $6 ELSE l.failures + $6 END,
         window_start = CASE WHEN l.window_start < pg_catalog.now() - pg_catalog.make_interval(secs => $4)
                             THEN pg_catalog.now() ELSE l.window_start END,
         locked_until = CASE WHEN (CASE WHEN l.window_start < pg_catalog.now() - pg_catalog.make_interval(secs => $4)
                                        THEN $6 ELSE l.failures + $6 END) >= $3
                             THEN pg_catalog.now() + pg_catalog.make_interval(secs => $5)
                             ELSE l.locked_until END
     RETURNING CASE WHEN failures >= $3 THEN pg_catalog.to_char(locked_until AT TIME ZONE 'UTC',
                                                                'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') END",
    &[TEXTOID, TEXTOID, INT4OID, INT4OID, INT4OID, INT4OID],
);

static INSERT_FAILURE: Statement = Statement::new(
    "INSERT INTO oauth.auth_failure (client_id, source, reason) VALUES ($1, $2, $3)",
    &[TEXTOID, TEXTOID, TEXTOID],
);

/// Write a failure (and its effect on the lockout) in the current transaction.
pub fn record(spi: &mut SpiClient<'_>, failure: &Failure) -> Result<()> {
    let mut reason = failure.reason.clone();
    if failure.guesses > 0 && failure.lockout.threshold > 0 {
        let locked: Option<String> = COUNT_FAILURE
            .execute(
                spi,
                &[
                    failure.client_id.as_str().into(),
                    failure.group.as_str().into(),
                    failure.lockout.threshold.into(),
                    failure.lockout.window_secs.into(),
                    failure.lockout.duration_secs.into(),
                    failure.guesses.into(),
                ],
            )?
            .first()
            .get(1)?;
        if let Some(until) = locked {
            reason = format!("{reason}; locked out until {until}");
        }
    }
    INSERT_FAILURE.execute(
        spi,
        &[
            failure.client_id.as_str().into(),
            failure.source.as_str().into(),
            reason.as_str().into(),
        ],
    )?;
    Ok(())
}

static UPSERT_THROTTLED: Statement = Statement::new(
    "INSERT INTO oauth.source_throttle AS t (source, window_start, refused)
     VALUES ($1, pg_catalog.to_timestamp($2::float8), $3)
     ON CONFLICT (source, window_start) DO UPDATE SET
         refused = GREATEST(t.refused, EXCLUDED.refused),
         last_at = GREATEST(t.last_at, EXCLUDED.last_at)",
    &[TEXTOID, INT8OID, INT8OID],
);

/// Write (or raise) a throttled source's count of refusals in the current transaction.
pub fn record_throttled(spi: &mut SpiClient<'_>, throttled: &Throttled) -> Result<()> {
    UPSERT_THROTTLED.execute(
        spi,
        &[
            throttled.source.as_str().into(),
            throttled.window_start.into(),
            throttled.refused.into(),
        ],
    )?;
    Ok(())
}

/// Count `n` deferred actions that could not be carried out (`oauth.audit_dropped_events()`):
/// a sequence, which is not transactional, so the count survives the caller's rollback.
pub fn count_dropped(spi: &mut SpiClient<'_>, n: usize) -> Result<()> {
    for _ in 0..n {
        spi.update(
            "SELECT pg_catalog.nextval('oauth.audit_dropped_seq')",
            None,
            &[],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(
            truncate(&"x".repeat(1 << 20), MAX_ID_CHARS).chars().count(),
            256
        );
    }
}
