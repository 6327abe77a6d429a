//! Changes to what may log in (shmem/login.rs), held until their transaction commits: applied
//! to shared memory in the commit's own callback, after the commit is durable and before its
//! locks are released (so two changes of one row, serialized by its lock, are applied in
//! commit order), and dropped with a rollback of the transaction or of the subtransaction
//! that made them. A transaction that holds some cannot be prepared (PREPARE TRANSACTION):
//! its commit would happen in another session, which would not know to apply them.

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::shmem::login::{self, Change};

thread_local! {
    /// (subtransaction, change), in the order they were made.
    static PENDING: RefCell<Vec<(pg_sys::SubTransactionId, Change)>> = const { RefCell::new(Vec::new()) };
}

/// From _PG_init.
pub fn init() {
    // SAFETY: callbacks that live as long as the library (never unloaded); they only touch
    // this module's thread-local and, under its spinlock, shared memory.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// Apply `change` when the current transaction commits.
pub fn push(change: Change) {
    // SAFETY: reads the current subtransaction's id; any transaction state has one.
    let within = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with(|p| p.borrow_mut().push((within, change)));
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if PENDING.with(|p| p.borrow().is_empty()) {
        return;
    }
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            PENDING.with(|p| p.borrow_mut().clear());
            error!(
                "pg_oauth: a transaction that changes tokens, clients, policies or signing keys cannot be prepared while PostgreSQL logins with pg_oauth tokens are on"
            );
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            let changes: Vec<Change> =
                PENDING.with(|p| p.borrow_mut().drain(..).map(|(_, c)| c).collect());
            // SAFETY: this backend's database, set when it connected.
            let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
            login::apply(database, &changes, super::backend::now_micros());
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            PENDING.with(|p| p.borrow_mut().clear());
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    PENDING.with(|p| {
        let mut pending = p.borrow_mut();
        match event {
            // Its changes now belong to the parent, and go if the parent rolls back.
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
                for (within, _) in pending.iter_mut().filter(|(w, _)| *w == subxact) {
                    *within = parent;
                }
            }
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
                pending.retain(|(within, _)| *within != subxact);
            }
            _ => {}
        }
    });
}
