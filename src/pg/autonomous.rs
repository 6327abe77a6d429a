//! A transaction that commits although the caller's rolls back: a dynamic background
//! worker, connected to the caller's database as the caller's user, runs a payload in its
//! own transaction while the caller waits (bounded). What the payload means is the caller's
//! business (store/deferred.rs); this module moves it and reports the outcome.
//!
//! The payload travels through a dynamic shared memory segment: one status byte, a 4-byte
//! length, the bytes. The worker writes back the status.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// How a payload's run ended, as far as the caller saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still running when the caller stopped waiting: it commits later.
    Pending,
    Done,
    /// The worker stopped without committing.
    Failed,
    /// No worker could be started.
    NoSlot,
}

const STATUS_PENDING: u8 = 0;
const STATUS_DONE: u8 = 1;
const HEADER: usize = 1 + 4;
const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// All worker slots (max_worker_processes) may be busy for a moment: keep trying this long.
const START_LIMIT: Duration = Duration::from_secs(5);

/// Run `payload` in a new background worker whose entry point is the library function
/// `function` (which calls `worker_main`), and wait for it. `what` names the work in
/// warnings; on anything but `Done` a WARNING says what happened.
pub fn run_in_worker(function: &str, payload: &[u8], what: &str) -> Status {
    // SAFETY: the segment is created, filled and read only here and in the worker, and is
    // detached before returning (or by the resource owner if we are interrupted).
    let status = unsafe {
        let seg = pg_sys::dsm_create(HEADER + payload.len(), 0);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        std::ptr::write_volatile(base, STATUS_PENDING);
        std::ptr::copy_nonoverlapping(
            (payload.len() as u32).to_le_bytes().as_ptr(),
            base.add(1),
            4,
        );
        std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(HEADER), payload.len());
        let status = match start(function, pg_sys::dsm_segment_handle(seg)) {
            None => Status::NoSlot,
            Some(worker) => wait(&worker, base),
        };
        pg_sys::dsm_detach(seg);
        status
    };
    match status {
        Status::NoSlot => warning!(
            "pg_oauth: no background worker slot for {START_LIMIT:?} for {what}; raise max_worker_processes"
        ),
        Status::Pending => warning!(
            "pg_oauth: {what} did not finish within {WAIT_LIMIT:?}; it continues in the background"
        ),
        Status::Failed => warning!("pg_oauth: {what} failed; see the server log"),
        Status::Done => {}
    }
    status
}

/// Start the worker, retrying while every slot is busy (up to START_LIMIT).
fn start(
    function: &str,
    handle: pg_sys::dsm_handle,
) -> Option<pgrx::bgworkers::DynamicBackgroundWorker> {
    // SAFETY: reads of this backend's own globals.
    let extra = unsafe {
        format!(
            "{} {}",
            pg_sys::MyDatabaseId.to_u32(),
            pg_sys::GetUserId().to_u32()
        )
    };
    let attempt = || {
        BackgroundWorkerBuilder::new("pg_oauth autonomous action")
            .set_type("pg_oauth")
            .set_library("pg_oauth")
            .set_function(function)
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .set_argument(Some(pg_sys::Datum::from(handle)))
            .set_extra(&extra)
            // SAFETY: this backend's own pid.
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            .load_dynamic()
    };
    let started_at = Instant::now();
    loop {
        match attempt() {
            Ok(worker) => return Some(worker),
            Err(_) if started_at.elapsed() < START_LIMIT => super::backend::sleep_ms(20),
            Err(_) => return None,
        }
    }
}

/// Wait (up to WAIT_LIMIT) for the worker's status byte at `base`.
///
/// # Safety
/// `base` is the address of the attached segment the worker reports to.
unsafe fn wait(worker: &pgrx::bgworkers::DynamicBackgroundWorker, base: *mut u8) -> Status {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        // SAFETY: per the function's contract.
        if unsafe { std::ptr::read_volatile(base) } == STATUS_DONE {
            return Status::Done;
        }
        if Instant::now() >= deadline {
            return Status::Pending;
        }
        if let Err(BackgroundWorkerStatus::Stopped | BackgroundWorkerStatus::PostmasterDied) =
            worker.pid()
        {
            // Exited: it committed only if it said so before it stopped.
            // SAFETY: as above.
            let done = unsafe { std::ptr::read_volatile(base) } == STATUS_DONE;
            return if done { Status::Done } else { Status::Failed };
        }
        super::backend::sleep_ms(10);
    }
}

/// The worker's side: connect as the launching backend's user to its database, run `f` on
/// the payload in one transaction, report DONE. An error in `f` ends the worker before it
/// reports; the caller sees it stop.
pub fn worker_main(arg: pg_sys::Datum, f: fn(&[u8])) {
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
        BackgroundWorker::transaction(|| f(payload));
        std::ptr::write_volatile(base, STATUS_DONE);
        pg_sys::dsm_detach(seg);
    }
}
