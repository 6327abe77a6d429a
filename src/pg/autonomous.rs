//! A transaction that commits although the caller's rolls back: a dynamic background
//! worker, connected to the caller's database as the caller's user, runs a payload in its
//! own transaction. What the payload means is the caller's business (flow/deferred.rs);
//! this module moves it, retries it, and reports the outcome.
//!
//! Bounded, every way: at most `limit()` such workers run in the whole cluster (a quarter of
//! max_worker_processes, at least one; callers wait START_LIMIT for a place, then give up),
//! every attempt waits at most the caller's lock timeout for a lock, and a payload that still
//! fails after ATTEMPTS tries ends in `give_up`, which the caller's code makes visible (a
//! WARNING and a count). A caller waits WAIT_LIMIT at most, or not at all.
//!
//! The payload travels through a dynamic shared memory segment: one status byte, one byte
//! that says whether the segment is pinned (the caller does not wait, so the worker unpins
//! it when done), a 4-byte length, the bytes. The worker writes back the status.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::shmem::workers;

/// How a payload's run ended, as far as the caller saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still running when the caller stopped waiting (or did not wait): it commits later,
    /// or gives up visibly.
    Pending,
    Done,
    /// Every attempt failed; the worker gave up (and said so).
    Failed,
    /// No worker could be started.
    NoSlot,
}

const STATUS_PENDING: u8 = 0;
const STATUS_DONE: u8 = 1;
const STATUS_FAILED: u8 = 2;
const HEADER: usize = 2 + 4;
const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// Every place may be taken for a moment: keep trying this long.
const START_LIMIT: Duration = Duration::from_secs(5);
/// Tries of a payload, and the pauses between them (in all well under WAIT_LIMIT, with a
/// lock timeout of a second per try).
const ATTEMPTS: usize = 4;
const PAUSES_MS: [u64; ATTEMPTS - 1] = [100, 500, 1500];

/// What a worker runs: the payload, and which attempt this is (0, 1, ...).
pub type Run = fn(&[u8], usize);
/// What a worker does after its last attempt failed: make it visible.
pub type GiveUp = fn(&[u8], &str);

/// The most of pg_oauth's workers that run at once in the cluster.
pub fn limit() -> u32 {
    // SAFETY: reads a setting of the server.
    let max = unsafe { pg_sys::max_worker_processes };
    (max / 4).max(1) as u32
}

/// Run `payload` in a new background worker whose entry point is the library function
/// `function` (which calls `worker_main`); wait for it when `wait`. `what` names the work in
/// warnings; on anything but `Done` (or a `Pending` nobody waited for) a WARNING says what
/// happened.
pub fn run_in_worker(function: &str, payload: &[u8], what: &str, wait: bool) -> Status {
    // SAFETY: the segment is created, filled and read only here and in the worker; its
    // mapping outlives this call when we do not wait (pinned), else it is detached before
    // returning (or by the resource owner if we are interrupted).
    let status = unsafe {
        let seg = pg_sys::dsm_create(HEADER + payload.len(), 0);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        std::ptr::write_volatile(base, STATUS_PENDING);
        std::ptr::write_volatile(base.add(1), u8::from(!wait));
        std::ptr::copy_nonoverlapping(
            (payload.len() as u32).to_le_bytes().as_ptr(),
            base.add(2),
            4,
        );
        std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(HEADER), payload.len());
        let handle = pg_sys::dsm_segment_handle(seg);
        if !wait {
            // The segment must outlive our mapping: the worker unpins it when done.
            pg_sys::dsm_pin_segment(seg);
        }
        let status = match start(function, handle) {
            None => {
                if !wait {
                    pg_sys::dsm_unpin_segment(handle);
                }
                Status::NoSlot
            }
            Some(worker) if wait => wait_for(&worker, base),
            Some(_) => Status::Pending,
        };
        pg_sys::dsm_detach(seg);
        status
    };
    match status {
        Status::NoSlot => warning!(
            "pg_oauth: no background worker could be started within {} s for the {what}; it was not carried out and is counted in oauth.audit_dropped_events() (pg_oauth runs at most {} at once: a quarter of max_worker_processes)",
            START_LIMIT.as_secs(),
            limit()
        ),
        Status::Pending if wait => warning!(
            "pg_oauth: the {what} did not finish within {} s; it goes on in the background, and the server log will say if it fails",
            WAIT_LIMIT.as_secs()
        ),
        Status::Failed => warning!(
            "pg_oauth: the {what} failed; the server log says why"
        ),
        Status::Pending | Status::Done => {}
    }
    status
}

/// Take a place and start the worker, retrying while every place is taken (up to
/// START_LIMIT). The worker gives the place back as it exits.
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
        if !workers::enter(limit()) {
            return None;
        }
        let started = BackgroundWorkerBuilder::new("pg_oauth autonomous action")
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
            .ok()
            .filter(|worker| worker.wait_for_startup().is_ok());
        if started.is_none() {
            workers::leave();
        }
        started
    };
    let started_at = Instant::now();
    loop {
        match attempt() {
            Some(worker) => return Some(worker),
            None if started_at.elapsed() < START_LIMIT => super::backend::sleep_ms(20),
            None => return None,
        }
    }
}

/// Wait (up to WAIT_LIMIT) for the worker's status byte at `base`.
///
/// # Safety
/// `base` is the address of the attached segment the worker reports to.
unsafe fn wait_for(worker: &pgrx::bgworkers::DynamicBackgroundWorker, base: *mut u8) -> Status {
    let deadline = Instant::now() + WAIT_LIMIT;
    let read = || {
        // SAFETY: per the function's contract.
        match unsafe { std::ptr::read_volatile(base) } {
            STATUS_DONE => Some(Status::Done),
            STATUS_FAILED => Some(Status::Failed),
            _ => None,
        }
    };
    loop {
        if let Some(status) = read() {
            return status;
        }
        if Instant::now() >= deadline {
            return Status::Pending;
        }
        if let Err(BackgroundWorkerStatus::Stopped | BackgroundWorkerStatus::PostmasterDied) =
            worker.pid()
        {
            // Exited: its last word, or a failure if it said nothing.
            return read().unwrap_or(Status::Failed);
        }
        super::backend::sleep_ms(10);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn leave_on_exit(_code: i32, _arg: pg_sys::Datum) {
    workers::leave();
}

/// The worker's side: connect as the launching backend's user to its database, try `run`
/// on the payload (each try its own transaction) until one commits or ATTEMPTS have failed,
/// then report DONE, or call `give_up` and report FAILED.
pub fn worker_main(arg: pg_sys::Datum, run: Run, give_up: GiveUp) {
    // SAFETY: registers a callback for this process's exit, before anything can fail.
    unsafe { pg_sys::before_shmem_exit(Some(leave_on_exit), pg_sys::Datum::from(0)) };
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let mut ids = BackgroundWorker::get_extra()
        .split(' ')
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (db, user) = (ids.next().unwrap_or(0), ids.next().unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(pg_sys::Oid::from(db)),
        Some(pg_sys::Oid::from(user)),
    );

    // SAFETY: the handle names the segment the launching backend created; it keeps it
    // attached (or pinned, when it does not wait) until we report.
    unsafe {
        let seg = pg_sys::dsm_attach(arg.value() as pg_sys::dsm_handle);
        if seg.is_null() {
            log!("pg_oauth: autonomous action segment is gone; the caller stopped waiting");
            return;
        }
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        let pinned = std::ptr::read_volatile(base.add(1)) != 0;
        let mut len = [0u8; 4];
        std::ptr::copy_nonoverlapping(base.add(2), len.as_mut_ptr(), 4);
        let payload =
            std::slice::from_raw_parts(base.add(HEADER), u32::from_le_bytes(len) as usize);
        let status = match attempts(payload, run) {
            Ok(()) => STATUS_DONE,
            Err(why) => {
                BackgroundWorker::transaction(|| give_up(payload, &why));
                STATUS_FAILED
            }
        };
        std::ptr::write_volatile(base, status);
        if pinned {
            pg_sys::dsm_unpin_segment(pg_sys::dsm_segment_handle(seg));
        }
        pg_sys::dsm_detach(seg);
    }
}

/// Try `run` on `payload` up to ATTEMPTS times; the last error's message if none committed.
fn attempts(payload: &[u8], run: Run) -> Result<(), String> {
    let mut why = String::new();
    for attempt in 0..ATTEMPTS {
        let committed = PgTryBuilder::new(|| {
            BackgroundWorker::transaction(|| run(payload, attempt));
            Ok(())
        })
        .catch_others(|caught| {
            // SAFETY: the caught ERROR left the transaction aborted; this ends it.
            unsafe { pg_sys::AbortCurrentTransaction() };
            Err(caught_message(&caught))
        })
        .execute();
        match committed {
            Ok(()) => return Ok(()),
            Err(message) => why = message,
        }
        if let Some(pause) = PAUSES_MS.get(attempt) {
            super::backend::sleep_ms(*pause as i64);
        }
    }
    Err(why)
}

fn caught_message(caught: &pg_sys::panic::CaughtError) -> String {
    use pg_sys::panic::CaughtError;
    match caught {
        CaughtError::PostgresError(report)
        | CaughtError::ErrorReport(report)
        | CaughtError::RustPanic {
            ereport: report, ..
        } => report.message().to_owned(),
    }
}
