//! Writes that must commit even though the request that makes them fails.
//!
//! A refresh token presented twice must revoke its family (RFC 9700 §4.14), and a failed
//! client authentication must be recorded, but the request that detects either fails. So
//! such actions are *deferred* while the request runs and carried out when it fails:
//!
//! - over HTTP, in the request's own transaction after its subtransaction rolled back (the
//!   endpoint answers with the error and commits);
//! - from SQL, where the caller's transaction is about to roll back, in a dynamic background
//!   worker — its own connection and transaction — while the caller waits (bounded). The
//!   actions touch only rows the failed request did not lock.
//!
//! The actions travel to the worker through a dynamic shared memory segment; the worker
//! writes back one status byte.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Serialize, Deserialize)]
pub enum Action {
    /// Revoke a refresh token family and every access token issued from it.
    RevokeFamily { family: [u8; 16], reason: String },
    /// Record a failed client authentication (and count it toward a lockout).
    RecordFailure(crate::audit::Failure),
    /// Record how many requests a throttled source has been refused in its window.
    RecordThrottled(crate::audit::Throttled),
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

const STATUS_PENDING: u8 = 0;
const STATUS_DONE: u8 = 1;
const STATUS_FAILED: u8 = 2;
/// Not a worker's status: no worker could be started.
const STATUS_NO_SLOT: u8 = 3;
const HEADER: usize = 1 + 4;
const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// All worker slots (max_worker_processes) may be busy for a moment: keep trying this long.
const START_LIMIT: Duration = Duration::from_secs(5);

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
    let status = match run_in_worker(actions) {
        STATUS_FAILED => {
            let uncounted: Vec<Action> = actions.iter().map(Action::uncounted).collect();
            let counted = |a: &Action| matches!(a, Action::RecordFailure(f) if f.guesses > 0);
            if actions.iter().any(counted) {
                run_in_worker(&uncounted)
            } else {
                STATUS_FAILED
            }
        }
        status => status,
    };
    match status {
        STATUS_DONE => true,
        // Still running after the wait: it commits later, nothing is lost.
        STATUS_PENDING => false,
        _ => {
            count_dropped(actions.len());
            false
        }
    }
}

impl Action {
    /// The same action, not counting toward a lockout.
    fn uncounted(&self) -> Action {
        match self {
            Action::RecordFailure(f) if f.guesses > 0 => {
                Action::RecordFailure(crate::audit::Failure {
                    guesses: 0,
                    reason: format!(
                        "{}; not counted toward the lockout (its row was busy)",
                        f.reason
                    ),
                    ..f.clone()
                })
            }
            Action::RecordFailure(f) => Action::RecordFailure(f.clone()),
            Action::RecordThrottled(t) => Action::RecordThrottled(t.clone()),
            Action::RevokeFamily { family, reason } => Action::RevokeFamily {
                family: *family,
                reason: reason.clone(),
            },
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

fn run_in_worker(actions: &[Action]) -> u8 {
    let payload = serde_json::to_vec(actions).expect("actions serialize");
    // SAFETY: the segment is created, filled and read only here and in the worker, and is
    // detached before returning (or by the resource owner if we are interrupted).
    unsafe {
        let seg = pg_sys::dsm_create(HEADER + payload.len(), 0);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        std::ptr::write_volatile(base, STATUS_PENDING);
        std::ptr::copy_nonoverlapping(
            (payload.len() as u32).to_le_bytes().as_ptr(),
            base.add(1),
            4,
        );
        std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(HEADER), payload.len());
        let handle = pg_sys::dsm_segment_handle(seg);

        let extra = format!(
            "{} {}",
            pg_sys::MyDatabaseId.to_u32(),
            pg_sys::GetUserId().to_u32()
        );
        let start = || {
            BackgroundWorkerBuilder::new("pg_oauth autonomous action")
                .set_type("pg_oauth")
                .set_library("pg_oauth")
                .set_function("pg_oauth_autonomous_main")
                .enable_spi_access()
                .set_start_time(BgWorkerStartTime::RecoveryFinished)
                .set_restart_time(None)
                .set_argument(Some(pg_sys::Datum::from(handle)))
                .set_extra(&extra)
                .set_notify_pid(pg_sys::MyProcPid)
                .load_dynamic()
        };
        let started_at = Instant::now();
        let mut started = start();
        while started.is_err() && started_at.elapsed() < START_LIMIT {
            crate::db::sleep_ms(20);
            started = start();
        }
        let status = match started {
            Err(_) => {
                warning!(
                    "pg_oauth: no background worker slot for {START_LIMIT:?} for {actions:?}; raise max_worker_processes"
                );
                STATUS_NO_SLOT
            }
            Ok(worker) => {
                let deadline = Instant::now() + WAIT_LIMIT;
                loop {
                    let status = std::ptr::read_volatile(base);
                    if status != STATUS_PENDING || Instant::now() >= deadline {
                        break status;
                    }
                    if let Err(
                        BackgroundWorkerStatus::Stopped | BackgroundWorkerStatus::PostmasterDied,
                    ) = worker.pid()
                    {
                        // Exited without reporting success: its transaction failed.
                        let status = std::ptr::read_volatile(base);
                        break if status == STATUS_PENDING {
                            STATUS_FAILED
                        } else {
                            status
                        };
                    }
                    crate::db::sleep_ms(10);
                }
            }
        };
        pg_sys::dsm_detach(seg);
        if status == STATUS_PENDING {
            warning!("pg_oauth: {actions:?} did not finish within {WAIT_LIMIT:?}; it continues in the background");
        } else if status == STATUS_FAILED {
            warning!("pg_oauth: {actions:?} failed; see the server log");
        }
        status
    }
}

fn execute(spi: &mut SpiClient<'_>, action: &Action) -> Result<()> {
    match action {
        Action::RevokeFamily { family, reason } => {
            crate::refresh::revoke_family(spi, family, reason)?;
        }
        Action::RecordFailure(failure) => crate::audit::record(spi, failure)?,
        Action::RecordThrottled(throttled) => crate::audit::record_throttled(spi, throttled)?,
    }
    Ok(())
}

/// In the worker: all actions in one transaction, with a safe search_path.
fn execute_all(actions: &[Action]) {
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
        for action in actions {
            execute(spi, action)?;
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("pg_oauth autonomous action failed: {e}"));
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_oauth_autonomous_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let mut ids = BackgroundWorker::get_extra()
        .split(' ')
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (db, user) = (ids.next().unwrap_or(0), ids.next().unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(pg_sys::Oid::from(db)),
        Some(pg_sys::Oid::from(user)),
    );

    // SAFETY: the handle names the segment the launching backend created and keeps
    // attached until it sees our status byte (or gives up waiting).
    unsafe {
        let seg = pg_sys::dsm_attach(arg.value() as pg_sys::dsm_handle);
        if seg.is_null() {
            log!("pg_oauth: autonomous action segment is gone; the caller stopped waiting");
            return;
        }
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        let mut len = [0u8; 4];
        std::ptr::copy_nonoverlapping(base.add(1), len.as_mut_ptr(), 4);
        let payload =
            std::slice::from_raw_parts(base.add(HEADER), u32::from_le_bytes(len) as usize);
        let actions: Vec<Action> = serde_json::from_slice(payload).expect("valid actions");
        // An error inside ends this worker before it reports DONE; the caller sees it stop.
        BackgroundWorker::transaction(|| execute_all(&actions));
        std::ptr::write_volatile(base, STATUS_DONE);
        pg_sys::dsm_detach(seg);
    }
}
