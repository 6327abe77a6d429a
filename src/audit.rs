//! Failed client authentications: the audit trail (`oauth.auth_failure`) and brute-force
//! lockout per client id and source (`oauth.client_lockout`).
//!
//! A failure is deferred while the request runs and written where it survives the
//! request's failure (see autonomous.rs): over HTTP in the request's own transaction, from
//! SQL by a background worker.
//!
//! Lockout is keyed by (client id, source) so that an attacker can only lock a client out
//! for its own address; the lockout state is cached per backend and invalidated like the
//! client cache, so the steady-state path runs no extra SQL.

use std::cell::{Cell, RefCell};

use pgrx::pg_sys::BuiltinOid::{INT4OID, INT8OID, TEXTOID};
use pgrx::spi::SpiClient;
use pgrx::{pg_extern, search_path};
use serde::{Deserialize, Serialize};

use crate::autonomous;
use crate::cache::{Cache, Source};
use crate::db::{self, Statement};
use crate::error::{OAuthError, Result};
use crate::gucs;
use crate::shared::sources;

/// Longest client id and source kept (ids longer than this cannot exist: see oauth.client).
const MAX_ID_CHARS: usize = 255;
const MAX_SOURCE_CHARS: usize = 100;

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
    fn current() -> Lockout {
        Lockout {
            threshold: gucs::LOCKOUT_THRESHOLD.get(),
            window_secs: gucs::LOCKOUT_WINDOW.get(),
            duration_secs: gucs::LOCKOUT_DURATION.get(),
        }
    }
}

/// What this backend knows of a (client, source) lockout row.
#[derive(Debug, Clone, Copy)]
struct State {
    failures: i32,
    locked_until_us: Option<i64>,
}

const CACHE_CAPACITY: usize = 10_000;

thread_local! {
    /// Set while an HTTP request runs (audit::request), whatever its source.
    static IN_REQUEST: Cell<bool> = const { Cell::new(false) };
    static REQUEST_SOURCE: RefCell<Option<String>> = const { RefCell::new(None) };
    static BACKEND_SOURCE: RefCell<Option<String>> = const { RefCell::new(None) };
    /// (client id, source) -> its lockout row (None: no row); see cache.rs.
    static STATES: Cache<(String, String), Option<State>> =
        Cache::new(Source::Lockouts, CACHE_CAPACITY, |_| true);
}

fn truncate(value: &str, max_chars: usize) -> String {
    match value.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

static CLIENT_ADDRESS: Statement =
    Statement::new("SELECT pg_catalog.host(pg_catalog.inet_client_addr())", &[]);

/// Where the current request comes from: the request's source over PostgREST, else this
/// backend's client address (`local` for Unix sockets and background workers).
fn source(spi: &SpiClient<'_>) -> Result<String> {
    if let Some(source) = REQUEST_SOURCE.with_borrow(Clone::clone) {
        return Ok(source);
    }
    if let Some(source) = BACKEND_SOURCE.with_borrow(Clone::clone) {
        return Ok(source);
    }
    let address: Option<String> = CLIENT_ADDRESS.query(spi, &[])?.first().get(1)?;
    let source = address.unwrap_or_else(|| "local".into());
    BACKEND_SOURCE.set(Some(source.clone()));
    Ok(source)
}

/// The caller's address over PostgREST, from the header named by
/// `pg_oauth.http_client_address_header` (its last entry: the one the nearest proxy added).
pub fn source_from_headers(headers: &serde_json::Value) -> Option<String> {
    let name = gucs::string(&gucs::HTTP_CLIENT_ADDRESS_HEADER)?.to_ascii_lowercase();
    let value = headers.get(name.as_str())?.as_str()?;
    let last = value.rsplit(',').next()?.trim();
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    (!clean.is_empty()).then(|| truncate(&clean, MAX_SOURCE_CHARS))
}

/// What lockouts and throttles count by: the source, except that an IPv6 address counts by
/// its /64, the smallest network a site gets (RFC 6177): whoever holds one address holds 2^64
/// of them. An IPv4-mapped address counts as the IPv4 address.
fn group_of(source: &str) -> String {
    match source.parse::<std::net::Ipv6Addr>() {
        Ok(address) => match address.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = address.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
        Err(_) => source.to_owned(),
    }
}

/// Run one request with `source` as its source (HTTP).
pub fn request<R>(source: Option<String>, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REQUEST_SOURCE.set(None);
            IN_REQUEST.set(false);
        }
    }
    REQUEST_SOURCE.set(source);
    IN_REQUEST.set(true);
    let _reset = Reset;
    f()
}

static LOAD_STATE: Statement = Statement::new(
    "SELECT failures, pg_catalog.date_part('epoch', locked_until)::float8
       FROM oauth.client_lockout WHERE client_id = $1 AND source = $2",
    &[TEXTOID, TEXTOID],
);

fn state(spi: &SpiClient<'_>, client_id: &str, source: &str) -> Result<Option<State>> {
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

fn now_secs() -> i64 {
    db::now_micros() / 1_000_000
}

/// The window over which failures count, per client and per source.
fn window_secs() -> i64 {
    i64::from(gucs::LOCKOUT_WINDOW.get())
}

/// A refusal, after pg_oauth.refusal_delay for SQL callers. A refusal costs no argon2, so a
/// guesser would otherwise get refusals as fast as it can ask (measured: 4 connections
/// refused at full speed took the CPU a warm client needed, 0.33x of its rate). The wait is
/// on the latch: no CPU, cancellable. Over HTTP the connection belongs to PostgREST's pool,
/// which a wait would hand to the guesser; a proxy's rate limit does that job there.
fn paced(refusal: OAuthError) -> OAuthError {
    let delay = gucs::REFUSAL_DELAY.get();
    if delay > 0 && !IN_REQUEST.get() {
        db::pause_ms(i64::from(delay));
    }
    refusal
}

/// One client authentication attempt, from the lockout check to its outcome.
pub struct Attempt {
    client_id: String,
    source: String,
    group: String,
    had_failures: bool,
}

impl Attempt {
    /// Start an attempt for the client id the request names: refused at once (no argon2
    /// work) while that client is locked out for this source.
    pub fn begin(spi: &SpiClient<'_>, client_id: &str) -> Result<Attempt> {
        let source = source(spi)?;
        let group = group_of(&source);
        let state = if gucs::LOCKOUT_THRESHOLD.get() > 0 {
            state(spi, client_id, &group)?
        } else {
            None
        };
        if let Some(until) = state.and_then(|s| s.locked_until_us) {
            let left = until - db::now_micros();
            if left > 0 {
                return Err(paced(OAuthError::locked_out((left + 999_999) / 1_000_000)));
            }
        }
        let limit = gucs::SOURCE_FAILURE_LIMIT.get();
        let refused = (limit > 0)
            .then(|| sources::refuse(&group, now_secs(), window_secs(), limit as u32))
            .flatten();
        if let Some(refusal) = refused {
            // One aggregate row per source and window, written at the 1st, 2nd, 4th, 8th …
            // refusal: the count is at least half the true one, for O(log n) writes.
            if refusal.refused.is_power_of_two() {
                autonomous::defer(autonomous::Action::RecordThrottled(Throttled {
                    source: group.clone(),
                    window_start: refusal.window_start,
                    refused: i64::from(refusal.refused),
                }));
            }
            return Err(paced(OAuthError::source_throttled(refusal.left.max(1))));
        }
        Ok(Attempt {
            client_id: client_id.to_owned(),
            source,
            group,
            had_failures: state.is_some_and(|s| s.failures > 0),
        })
    }

    /// The client authenticated: failures counted against it from this source are forgiven.
    pub fn succeeded(self, spi: &mut SpiClient<'_>) -> Result<()> {
        if self.had_failures {
            CLEAR.execute(
                spi,
                &[self.client_id.as_str().into(), self.group.as_str().into()],
            )?;
        }
        Ok(())
    }

    /// The client failed to authenticate: recorded when the request fails (see
    /// autonomous.rs), which it is about to.
    pub fn failed(self, reason: &str, guesses: i32) {
        let mut reason = reason.to_owned();
        let limit = gucs::SOURCE_FAILURE_LIMIT.get();
        if guesses > 0 && limit > 0 {
            // Counted now, in every backend's view: the throttle needs no table write.
            if sources::count(&self.group, now_secs(), window_secs()) == limit as u32 {
                reason.push_str("; the source is throttled for the rest of its window");
            }
        }
        autonomous::defer(autonomous::Action::RecordFailure(Failure {
            client_id: truncate(&self.client_id, MAX_ID_CHARS),
            source: self.source,
            group: self.group,
            reason,
            guesses,
            lockout: Lockout::current(),
        }));
    }
}

static CLEAR: Statement = Statement::new(
    "DELETE FROM oauth.client_lockout WHERE client_id = $1 AND source = $2",
    &[TEXTOID, TEXTOID],
);

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

/// For oauth.purge_expired: the shortest retention it accepts (pg_oauth.audit_min_retention,
/// read here because only a loaded library knows the setting is superuser-only).
#[pg_extern(stable, parallel_safe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_min_retention_secs() -> i32 {
    gucs::AUDIT_MIN_RETENTION.get()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn ipv6_sources_count_by_their_64_prefix() {
        assert_eq!(group_of("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(group_of("2001:db8:1:2::ffff"), "2001:db8:1:2::/64");
        assert_eq!(group_of("2001:db8:1:3::1"), "2001:db8:1:3::/64");
        assert_eq!(group_of("::ffff:192.0.2.7"), "192.0.2.7");
        for kept in ["192.0.2.7", "local", "fe80::1%eth0", "unknown"] {
            assert_eq!(group_of(kept), kept);
        }
    }

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
