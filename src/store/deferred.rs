//! Writes that must commit even though the request that makes them fails.
//!
//! A refresh token presented twice must revoke its family (RFC 9700 §4.14), and a failed
//! client authentication must be recorded, but the request that detects either fails. So
//! such actions are *deferred* while the request runs and carried out when it fails:
//!
//! - over HTTP, in the request's own transaction after its subtransaction rolled back (the
//!   endpoint answers with the error and commits);
//! - from SQL, where the caller's transaction is about to roll back, in a dynamic background
//!   worker (pg/autonomous.rs) — its own connection and transaction — while the caller waits
//!   (bounded). The actions touch only rows the failed request did not lock.

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::jose::keys;
use crate::pg::autonomous::{self, Status};
use crate::store::audit::{self, Failure, Throttled};
use crate::store::refresh;

#[derive(Debug, Serialize, Deserialize)]
pub enum Action {
    /// Revoke a refresh token family and every access token issued from it.
    RevokeFamily { family: [u8; 16], reason: String },
    /// Record a failed client authentication (and count it toward a lockout).
    RecordFailure(Failure),
    /// Record how many requests a throttled source has been refused in its window.
    RecordThrottled(Throttled),
    /// Make an algorithm's first signing keys, committed before anything signs with them.
    PublishKeys { alg: String },
}

thread_local! {
    static DEFERRED: RefCell<Vec<Action>> = const { RefCell::new(Vec::new()) };
}

/// Carry out `action` if the current request fails.
pub fn defer(action: Action) {
    DEFERRED.with_borrow_mut(|d| d.push(action));
}

/// Forget actions of an earlier request that ended without carrying them out.
pub fn clear_deferred() {
    DEFERRED.with_borrow_mut(Vec::clear);
}

/// HTTP: the request failed and its subtransaction rolled back; carry out its deferred
/// actions in the current transaction, which commits with the error response.
pub fn apply_deferred(spi: &mut SpiClient<'_>) -> Result<()> {
    for action in DEFERRED.take() {
        execute(spi, &action)?;
    }
    Ok(())
}

/// SQL: run `f`; if it fails, commit its deferred actions in a background worker before
/// the error is raised (and rolls back the caller's transaction).
pub fn on_failure<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    clear_deferred();
    let result = f();
    let actions = DEFERRED.take();
    if result.is_err() && !actions.is_empty() {
        commit(&actions);
    }
    result
}

const WORKER_MAIN: &str = "pg_oauth_autonomous_main";

fn run(actions: &[Action]) -> Status {
    let payload = serde_json::to_vec(actions).expect("actions serialize");
    autonomous::run_in_worker(WORKER_MAIN, &payload, &format!("{actions:?}"))
}

/// Run `actions` in one committed transaction of a background worker. Returns whether it
/// committed; on failure a WARNING says why (the caller's own error still goes to its
/// client).
///
/// Failure records must not wait on the caller: its own transaction may hold the lockout
/// row (a success earlier in it cleared the row). A batch of failure records therefore runs
/// with a short lock_timeout, and if it fails, once more without counting toward lockouts
/// (a plain INSERT into oauth.auth_failure cannot wait). What is lost even so (no worker
/// slot, a failing worker) is counted in oauth.audit_dropped_seq and logged.
pub fn commit(actions: &[Action]) -> bool {
    let status = match run(actions) {
        Status::Failed => {
            let counted = |a: &Action| matches!(a, Action::RecordFailure(f) if f.guesses > 0);
            if actions.iter().any(counted) {
                let uncounted: Vec<Action> = actions.iter().map(Action::uncounted).collect();
                run(&uncounted)
            } else {
                Status::Failed
            }
        }
        status => status,
    };
    match status {
        Status::Done => true,
        // Still running after the wait: it commits later, nothing is lost.
        Status::Pending => false,
        Status::Failed | Status::NoSlot => {
            count_dropped(actions.len());
            false
        }
    }
}

impl Action {
    /// The same action, not counting toward a lockout.
    fn uncounted(&self) -> Action {
        match self {
            Action::RecordFailure(f) if f.guesses > 0 => Action::RecordFailure(Failure {
                guesses: 0,
                reason: format!(
                    "{}; not counted toward the lockout (its row was busy)",
                    f.reason
                ),
                ..f.clone()
            }),
            Action::RecordFailure(f) => Action::RecordFailure(f.clone()),
            Action::RecordThrottled(t) => Action::RecordThrottled(t.clone()),
            Action::RevokeFamily { family, reason } => Action::RevokeFamily {
                family: *family,
                reason: reason.clone(),
            },
            Action::PublishKeys { alg } => Action::PublishKeys { alg: alg.clone() },
        }
    }
}

/// Count actions that could not be carried out (sequences are not transactional: the
/// count survives the caller's rollback).
fn count_dropped(n: usize) {
    let counted = Spi::connect_mut(|spi| -> Result<()> {
        for _ in 0..n {
            spi.update(
                "SELECT pg_catalog.nextval('oauth.audit_dropped_seq')",
                None,
                &[],
            )?;
        }
        Ok(())
    });
    if counted.is_err() {
        warning!("pg_oauth: {n} deferred audit actions were lost and could not be counted");
    }
}

fn execute(spi: &mut SpiClient<'_>, action: &Action) -> Result<()> {
    match action {
        Action::RevokeFamily { family, reason } => {
            refresh::revoke_family(spi, family, reason)?;
        }
        Action::RecordFailure(failure) => audit::record(spi, failure)?,
        Action::RecordThrottled(throttled) => audit::record_throttled(spi, throttled)?,
        Action::PublishKeys { alg } => {
            let alg = keys::alg_or_default(Some(alg))?;
            keys::ensure(spi, alg)?;
        }
    }
    Ok(())
}

/// Make `alg`'s first signing keys in a transaction of their own (a background worker) and
/// wait for its commit: they are published — in the JWK Set, and sent to PostgREST — before
/// the caller signs with them. Returns whether they committed.
pub fn publish_keys(alg: &str) -> bool {
    run(&[Action::PublishKeys {
        alg: alg.to_owned(),
    }]) == Status::Done
}

/// In the worker: all actions in one transaction, with a safe search_path.
fn execute_all(payload: &[u8]) {
    let actions: Vec<Action> = serde_json::from_slice(payload).expect("valid actions");
    Spi::connect_mut(|spi| -> Result<()> {
        spi.update("SET LOCAL search_path = pg_catalog, pg_temp", None, &[])?;
        // Only failure records may give up on a lock (see `commit`); a family revocation
        // waits for its rows.
        if actions
            .iter()
            .all(|a| matches!(a, Action::RecordFailure(_) | Action::RecordThrottled(_)))
        {
            spi.update("SET LOCAL lock_timeout = '1s'", None, &[])?;
        }
        for action in &actions {
            execute(spi, action)?;
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("pg_oauth autonomous action failed: {e}"));
}

/// The worker started by `run` (named by `WORKER_MAIN`).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_oauth_autonomous_main(arg: pg_sys::Datum) {
    autonomous::worker_main(arg, execute_all);
}
