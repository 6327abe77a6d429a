//! Writes that must commit even though the calling transaction is about to fail.
//!
//! A refresh token that is presented twice must revoke its family (RFC 9700 §4.14), but
//! the SQL call that detects the reuse raises `invalid_grant`, which rolls back everything
//! it wrote. So such actions run in a dynamic background worker — its own connection and
//! transaction — while the caller waits (bounded). The caller must hold no lock the action
//! needs; every call site is placed before the request takes row locks.
//!
//! The action travels through a dynamic shared memory segment; the worker writes back one
//! status byte.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum Action {
    /// Revoke a refresh token family and every access token issued from it.
    RevokeFamily { family: [u8; 16], reason: String },
    /// Record a failed client authentication (and count it toward a lockout).
    RecordFailure(crate::audit::Failure),
}

const STATUS_PENDING: u8 = 0;
const STATUS_DONE: u8 = 1;
const STATUS_FAILED: u8 = 2;
const HEADER: usize = 1 + 4;
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Run `action` in its own committed transaction. Returns whether it committed; on
/// failure a WARNING says why (the caller's own error still goes to its client).
pub fn commit(action: &Action) -> bool {
    let payload = serde_json::to_vec(action).expect("actions serialize");
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
        let started = BackgroundWorkerBuilder::new("pg_oauth autonomous action")
            .set_type("pg_oauth")
            .set_library("pg_oauth")
            .set_function("pg_oauth_autonomous_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .set_argument(Some(pg_sys::Datum::from(handle)))
            .set_extra(&extra)
            .set_notify_pid(pg_sys::MyProcPid)
            .load_dynamic();
        let status = match started {
            Err(_) => {
                warning!(
                    "pg_oauth: could not start a background worker for {action:?}; raise max_worker_processes"
                );
                STATUS_FAILED
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
                    pg_sys::WaitLatch(
                        pg_sys::MyLatch,
                        (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                            as i32,
                        10,
                        pg_sys::PG_WAIT_EXTENSION,
                    );
                    pg_sys::ResetLatch(pg_sys::MyLatch);
                    pg_sys::check_for_interrupts!();
                }
            }
        };
        pg_sys::dsm_detach(seg);
        if status == STATUS_PENDING {
            warning!("pg_oauth: {action:?} did not finish within {WAIT_LIMIT:?}; it continues in the background");
        } else if status == STATUS_FAILED {
            warning!("pg_oauth: {action:?} failed; see the server log");
        }
        status == STATUS_DONE
    }
}

fn execute(action: &Action) {
    Spi::connect_mut(|spi| -> crate::error::Result<()> {
        spi.update("SET LOCAL search_path = pg_catalog, pg_temp", None, &[])?;
        match action {
            Action::RevokeFamily { family, reason } => {
                crate::refresh::revoke_family(spi, family, reason)?;
            }
            Action::RecordFailure(failure) => {
                crate::audit::record(spi, failure)?;
            }
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
        let action: Action = serde_json::from_slice(payload).expect("a valid action");
        // An error inside ends this worker before it reports DONE; the caller sees it stop.
        BackgroundWorker::transaction(|| execute(&action));
        std::ptr::write_volatile(base, STATUS_DONE);
        pg_sys::dsm_detach(seg);
    }
}
