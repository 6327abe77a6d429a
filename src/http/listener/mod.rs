//! pg_oauth's own HTTP listener: the OAuth endpoints served by background workers of the
//! database server, without PostgREST.
//!
//! Opt-in: `shared_preload_libraries = 'pg_oauth'` and `pg_oauth.http_listen =
//! 'host:port'`. The postmaster binds the port at start, as it binds its own; its
//! `pg_oauth.http_workers` workers inherit the socket, each connects to
//! `pg_oauth.http_database`, and all accept on it. In each
//! worker, HTTP runs on a helper thread (server.rs) that never calls into PostgreSQL; the
//! worker's main thread answers the requests through the same handler PostgREST's
//! functions call (http/handler.rs), so both transports give the same answers (worker.rs). The
//! request's source, for lockouts and the audit trail, is the socket peer.

mod limits;
mod request;
mod server;
mod worker;

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;

use crate::config::gucs;

/// The listening socket, bound by the postmaster (as it binds its own port) and shared by the
/// workers it forks; -1 when the listener is off.
static LISTEN_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// From _PG_init: bind the listener's port and register its workers, when pg_oauth is being
/// preloaded and `pg_oauth.http_listen` is set.
pub fn register() {
    // SAFETY: a flag the postmaster sets while it loads shared_preload_libraries (the
    // listener's settings exist only then: config/gucs.rs).
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    let Some(listen) = gucs::string(&gucs::HTTP_LISTEN) else {
        return;
    };
    // pg_upgrade runs both servers in binary-upgrade mode, with the old cluster's settings
    // (the new one's too): nothing may serve, or write, then.
    // SAFETY: a flag the postmaster sets from its command line before loading libraries.
    if unsafe { pg_sys::IsBinaryUpgrade } {
        pgrx::log!("pg_oauth: the HTTP listener stays off in binary-upgrade mode (pg_upgrade)");
        return;
    }
    let Ok(address) = listen.parse::<std::net::SocketAddr>() else {
        pgrx::warning!(
            "pg_oauth: pg_oauth.http_listen = '{listen}' is not an address:port; the HTTP listener is off"
        );
        return;
    };
    // Bound once, here, without SO_REUSEPORT: a port another server holds (a copy of this
    // cluster started on the same host, say) is refused, as PostgreSQL refuses its own port,
    // instead of sharing connections between two databases.
    match server::bind(address) {
        Ok(fd) => LISTEN_FD.store(fd, std::sync::atomic::Ordering::Relaxed),
        Err(why) => {
            pgrx::warning!(
                "pg_oauth: the HTTP listener cannot listen on {address}: {why}; it is off (is another server using the port?)"
            );
            return;
        }
    }
    for i in 0..gucs::HTTP_WORKERS.get() {
        BackgroundWorkerBuilder::new(&format!("pg_oauth http listener {i}"))
            .set_type("pg_oauth http listener")
            .set_library("pg_oauth")
            .set_function("pg_oauth_http_main")
            .enable_spi_access()
            // On a hot standby too: it serves the read-only endpoints there, and refuses
            // writes with temporarily_unavailable until promotion.
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_restart_time(Some(std::time::Duration::from_secs(1)))
            .load();
    }
}

/// The listening socket the postmaster bound (inherited by its workers), if any.
fn listen_fd() -> Option<i32> {
    Some(LISTEN_FD.load(std::sync::atomic::Ordering::Relaxed)).filter(|fd| *fd >= 0)
}
