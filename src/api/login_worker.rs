//! The login worker: one background worker per database in `pg_oauth.login_databases`, which
//! builds that database's login state in shared memory when the server starts (or a crash
//! restart emptied shared memory, or a table was truncated, or the issuer changed) and again
//! on every reload (the login audience may have changed). Between rebuilds, each commit
//! publishes its own changes (authn/login_state.rs). Runs on a primary only: a standby runs
//! no trigger for replayed changes, so its state could not follow revocations.

use std::time::Duration;

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;

use crate::authn::login_state::{self, Rebuilt};
use crate::config::login as settings;
use crate::pg::{backend, subxact};

/// From _PG_init, while shared_preload_libraries load.
pub fn register() {
    // SAFETY: flags the postmaster sets before and while it loads libraries.
    let (preloading, upgrading) = unsafe {
        (
            pg_sys::process_shared_preload_libraries_in_progress,
            pg_sys::IsBinaryUpgrade,
        )
    };
    if !preloading || upgrading {
        return;
    }
    for (i, database) in settings::databases().iter().enumerate() {
        BackgroundWorkerBuilder::new(&format!("pg_oauth login state {database}"))
            .set_type("pg_oauth login state")
            .set_library("pg_oauth")
            .set_function("pg_oauth_login_main")
            .set_argument(i32::try_from(i).ok().into_datum())
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(Duration::from_secs(1)))
            .load();
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_oauth_login_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let index = arg.value();
    let Some(database) = settings::databases().get(index).cloned() else {
        return;
    };
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    backend::set_session_setting(c"search_path", "pg_catalog, pg_temp");
    // A rebuild keeps writers out while it reads: it waits for them briefly, then tries
    // again at the next tick rather than queueing every writer behind it.
    backend::set_session_setting(c"lock_timeout", "2s");
    let mut reloaded = true;
    loop {
        if reloaded || !BackgroundWorker::transaction(ready_or_off) {
            BackgroundWorker::transaction(|| rebuild(&database));
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(250))) {
            break;
        }
        reloaded = BackgroundWorker::sighup_received();
        if reloaded {
            // SAFETY: what every PostgreSQL process does on SIGHUP, outside a transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
}

/// Nothing to do: the state is built, or logins are off.
fn ready_or_off() -> bool {
    !backend::extension_installed(c"pg_oauth")
        || settings::audience().is_none()
        || login_state::ready()
}

fn rebuild(database: &str) {
    if !backend::extension_installed(c"pg_oauth") {
        return;
    }
    let outcome = subxact::attempt(|| Spi::connect_mut(login_state::rebuild));
    match outcome {
        Ok(Ok(Rebuilt::Done { overflow, .. }))
            if overflow.keys + overflow.clients + overflow.tokens == 0 => {}
        Ok(Ok(rebuilt @ Rebuilt::Done { .. })) => {
            warning!(
                "pg_oauth: database \"{database}\": {}",
                super::login::describe(&rebuilt)
            );
        }
        Ok(Ok(Rebuilt::Off(_))) => {}
        Ok(Err(err)) => warning!(
            "pg_oauth: database \"{database}\": the login state cannot be built: {}",
            err.description()
        ),
        Err(raised) => warning!(
            "pg_oauth: database \"{database}\": the login state cannot be built now: {}",
            raised.message
        ),
    }
}
