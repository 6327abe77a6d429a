//! Carrying deferred actions out (the queue: store/deferred.rs): in the request's
//! transaction over HTTP, in a background worker from SQL or when the request's transaction
//! cannot take a lock at once, and the worker's own side. Every way ends in a known outcome, which the request's error
//! reports truthfully (a reused refresh token: store/refresh.rs).

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::error::{OAuthError, Result};
use crate::jose::ring;
use crate::pg::autonomous::{self, Status};
use crate::pg::backend;
use crate::pg::db;
use crate::pg::subxact;
use crate::store::audit;
use crate::store::deferred::{self as queue, Action};
use crate::store::refresh::{self, Outcome};

const WORKER_MAIN: &str = "pg_oauth_autonomous_main";

/// How long an action waits for a lock: in the request's own transaction (which may hold a
/// listener batch), and in a worker's each try.
const IN_REQUEST_LOCK_TIMEOUT: &str = "200ms";
const WORKER_LOCK_TIMEOUT: &str = "1s";

/// SQL: run `f`; if it fails, commit its deferred actions in a background worker before
/// the error is raised (and rolls back the caller's transaction). The error says what
/// became of them.
pub fn on_failure<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    queue::clear_deferred();
    let result = f();
    let actions = queue::take();
    match result {
        Err(err) if !actions.is_empty() && !skipped_on_standby(&actions) => {
            let outcome = match run(&actions, true) {
                Status::Done => Outcome::Committed,
                Status::Pending => Outcome::Pending,
                Status::Failed | Status::NoSlot => Outcome::Lost,
            };
            Err(told(err, outcome))
        }
        other => other,
    }
}

/// HTTP: the request failed and its subtransaction rolled back; carry out its deferred
/// actions in the current transaction, which commits with the error response. An action
/// that cannot be done at once there (a lock held elsewhere) goes to a background worker
/// that retries it, so the request (and a listener batch) never waits long. Returns the
/// request's error, saying what became of them.
pub fn apply_deferred(spi: &mut SpiClient<'_>, err: OAuthError) -> Result<OAuthError> {
    let actions = queue::take();
    if actions.is_empty() || skipped_on_standby(&actions) {
        return Ok(err);
    }
    let mut outcome = Outcome::Committed;
    for action in actions {
        let done = db::with_setting(c"lock_timeout", IN_REQUEST_LOCK_TIMEOUT, || {
            subxact::attempt(|| execute(spi, &action))
        });
        if !matches!(done, Ok(Ok(()))) {
            outcome = match run(std::slice::from_ref(&action), false) {
                Status::NoSlot | Status::Failed => Outcome::Lost,
                Status::Pending | Status::Done => Outcome::Pending,
            };
        }
    }
    Ok(told(err, outcome))
}

/// The request's error, told what became of its deferred actions (only a reused refresh
/// token's message depends on it).
fn told(err: OAuthError, outcome: Outcome) -> OAuthError {
    match &err {
        OAuthError::InvalidGrant(d) if d == refresh::REUSED => refresh::reuse_error(outcome),
        _ => err,
    }
}

/// A hot standby cannot write: its deferred actions (failure records) are logged, not
/// carried out. Returns whether that is the case.
fn skipped_on_standby(actions: &[Action]) -> bool {
    if actions.is_empty() || !backend::is_standby() {
        return false;
    }
    for action in actions {
        log!(
            "pg_oauth: not carried out, this server is a read-only standby: {}",
            action.describe()
        );
    }
    true
}

/// Make `alg`'s first signing keys in a transaction of their own (a background worker) and
/// wait for its commit: they are published — in the JWK Set, and sent to PostgREST — before
/// the caller signs with them. Returns whether they committed.
pub fn publish_keys(alg: &str) -> bool {
    run(
        &[Action::PublishKeys {
            alg: alg.to_owned(),
        }],
        true,
    ) == Status::Done
}

/// Run `actions` in a background worker, waiting for its outcome when `wait`. Actions no
/// worker could be started for are counted and logged here; the worker does so itself for
/// those it gives up on.
fn run(actions: &[Action], wait: bool) -> Status {
    let payload = serde_json::to_vec(actions).expect("actions serialize");
    let what = actions
        .iter()
        .map(Action::describe)
        .collect::<Vec<_>>()
        .join("; ");
    let status = autonomous::run_in_worker(WORKER_MAIN, &payload, &what, wait);
    if status == Status::NoSlot {
        for action in actions {
            log!(
                "pg_oauth: lost the {}: {}",
                action.describe(),
                action.remedy()
            );
        }
        count_dropped(actions.len());
    }
    status
}

/// Count actions that could not be carried out (the count survives the caller's rollback).
fn count_dropped(n: usize) {
    if Spi::connect_mut(|spi| audit::count_dropped(spi, n)).is_err() {
        warning!("pg_oauth: {n} deferred actions were lost and could not be counted");
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
            let alg = ring::alg_or_default(Some(alg))?;
            ring::ensure(spi, alg)?;
        }
    }
    Ok(())
}

/// In the worker, one try: all actions in one transaction, with a safe search_path and a
/// lock timeout. After the first try, failure records no longer count toward a lockout: the
/// caller's own transaction may hold the lockout row (a success earlier in it cleared it).
fn execute_all(payload: &[u8], attempt: usize) {
    let actions: Vec<Action> = serde_json::from_slice(payload).expect("valid actions");
    Spi::connect_mut(|spi| -> Result<()> {
        spi.update("SET LOCAL search_path = pg_catalog, pg_temp", None, &[])?;
        spi.update(
            &format!("SET LOCAL lock_timeout = '{WORKER_LOCK_TIMEOUT}'"),
            None,
            &[],
        )?;
        for action in &actions {
            let action = if attempt > 0 {
                action.uncounted()
            } else {
                action.clone()
            };
            execute(spi, &action)?;
        }
        Ok(())
    })
    .unwrap_or_else(|e: OAuthError| {
        error!("pg_oauth: a deferred action failed: {}", e.description())
    });
}

/// In the worker, after its last try failed: say so in a way a DBA can act on, and count it.
fn give_up(payload: &[u8], why: &str) {
    let actions: Vec<Action> = serde_json::from_slice(payload).expect("valid actions");
    for action in &actions {
        warning!(
            "pg_oauth: gave up on the {} after retries ({why}); {}",
            action.describe(),
            action.remedy()
        );
    }
    count_dropped(actions.len());
}

/// The worker started by `run` (named by `WORKER_MAIN`).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_oauth_autonomous_main(arg: pg_sys::Datum) {
    autonomous::worker_main(arg, execute_all, give_up);
}
