//! One client authentication attempt: where it comes from, whether it is refused before
//! any secret is checked (a lockout of the client id for this source, or a throttled
//! source), and what its outcome records (store/audit.rs).
//!
//! Lockout is keyed by (client id, source) so that an attacker can only lock a client out
//! for its own address; the per-source throttle counts failures whatever ids they name.

use std::cell::{Cell, RefCell};

use pgrx::spi::SpiClient;

use crate::config::gucs;
use crate::error::{OAuthError, Result};
use crate::pg::backend;
use crate::pg::db::Statement;
use crate::pg::shmem::sources;
use crate::pg::shmem::stats;
use crate::store::audit::{self, truncate, Failure, Lockout, Throttled, MAX_ID_CHARS};
use crate::store::deferred::{self, Action};

thread_local! {
    /// Set while an HTTP request runs (attempts::request), whatever its source.
    static IN_REQUEST: Cell<bool> = const { Cell::new(false) };
    static REQUEST_SOURCE: RefCell<Option<String>> = const { RefCell::new(None) };
    static BACKEND_SOURCE: RefCell<Option<String>> = const { RefCell::new(None) };
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

fn now_secs() -> i64 {
    backend::now_micros() / 1_000_000
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
        backend::pause_ms(i64::from(delay));
    }
    refusal
}

/// Whether the caller's source is throttled now (see `Attempt::begin`; nothing counted).
pub fn source_is_throttled(spi: &SpiClient<'_>) -> Result<bool> {
    let limit = gucs::SOURCE_FAILURE_LIMIT.get();
    if limit <= 0 {
        return Ok(false);
    }
    let group = group_of(&source(spi)?);
    Ok(sources::is_throttled(
        &group,
        now_secs(),
        window_secs(),
        limit as u32,
    ))
}

/// One client authentication attempt, from the lockout check to its outcome.
pub struct Attempt {
    client_id: String,
    source: String,
    group: String,
    had_failures: bool,
}

impl Attempt {
    /// Start an attempt for the client ids the request names (each way of reading it):
    /// refused at once (no argon2 work) while any of them is locked out for this source, or
    /// the source is throttled.
    pub fn begin_all(spi: &SpiClient<'_>, client_ids: &[&str]) -> Result<Vec<Attempt>> {
        let source = source(spi)?;
        let group = group_of(&source);
        let mut attempts = Vec::with_capacity(client_ids.len());
        for client_id in client_ids {
            let state = if gucs::LOCKOUT_THRESHOLD.get() > 0 {
                audit::lockout_state(spi, client_id, &group)?
            } else {
                None
            };
            if let Some(until) = state.and_then(|s| s.locked_until_us) {
                let left = until - backend::now_micros();
                if left > 0 {
                    stats::count("client_authentication_failures", &["locked_out"]);
                    return Err(paced(OAuthError::locked_out((left + 999_999) / 1_000_000)));
                }
            }
            attempts.push(Attempt {
                client_id: (*client_id).to_owned(),
                source: source.clone(),
                group: group.clone(),
                had_failures: state.is_some_and(|s| s.failures > 0),
            });
        }
        let limit = gucs::SOURCE_FAILURE_LIMIT.get();
        let refused = (limit > 0)
            .then(|| sources::refuse(&group, now_secs(), window_secs(), limit as u32))
            .flatten();
        if let Some(refusal) = refused {
            // One aggregate row per source and window, written at the 1st, 2nd, 4th, 8th …
            // refusal: the count is at least half the true one, for O(log n) writes.
            if refusal.refused.is_power_of_two() {
                deferred::defer(Action::RecordThrottled(Throttled {
                    source: group.clone(),
                    window_start: refusal.window_start,
                    refused: i64::from(refusal.refused),
                }));
            }
            stats::count("client_authentication_failures", &["throttled_source"]);
            return Err(paced(OAuthError::source_throttled(refusal.left.max(1))));
        }
        Ok(attempts)
    }

    /// The client authenticated: failures counted against it from this source are forgiven.
    pub fn succeeded(self, spi: &mut SpiClient<'_>) -> Result<()> {
        // (A standby cannot write; the primary forgives them at the client's next request.)
        if self.had_failures && !backend::is_standby() {
            audit::clear_failures(spi, &self.client_id, &self.group)?;
        }
        Ok(())
    }

    /// The client failed to authenticate: recorded when the request fails (see
    /// store/deferred.rs), which it is about to.
    /// `count_source`: whether this failure counts toward the source's throttle (once per
    /// request, however many client ids it named).
    pub fn failed(self, reason: &str, guesses: i32, count_source: bool) {
        let mut reason = reason.to_owned();
        let limit = gucs::SOURCE_FAILURE_LIMIT.get();
        if guesses > 0 && limit > 0 && count_source {
            // Counted now, in every backend's view: the throttle needs no table write.
            if sources::count(&self.group, now_secs(), window_secs()) == limit as u32 {
                reason.push_str("; the source is throttled for the rest of its window");
            }
        }
        deferred::defer(Action::RecordFailure(Failure {
            client_id: truncate(&self.client_id, MAX_ID_CHARS),
            source: self.source,
            group: self.group,
            reason,
            guesses,
            lockout: Lockout::current(),
        }));
    }
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
}
