//! The PostgreSQL side of a listener worker: its main thread waits on its latch and
//! answers the requests the HTTP thread hands over through the handler PostgREST's
//! functions call (api/http), with the socket peer as each request's source.
//!
//! The requests waiting when the worker looks (at most [`BATCH`]) share one transaction,
//! each in a subtransaction of its own, and are answered after it commits: every answer
//! still follows a durable commit of what it reports (synchronous_commit as configured),
//! but one commit serves them all, as group commit does for concurrent sessions. An error
//! in a request rolls back its subtransaction only and answers it 500; if the commit itself
//! fails, every request of the batch gets 500. The worker goes on either way.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

use super::server::{self, Job, Limits};
use super::tls;
use crate::api::http::{self, Params, Reply};
use crate::authn::attempts;
use crate::config::gucs;
use crate::pg::redact;

/// The most requests one transaction answers: enough to share a commit among all a
/// worker's busy connections, few enough that none waits long for the others.
const BATCH: usize = 64;

extern "C" {
    /// PostgreSQL's SetLatch, for the HTTP thread (see its use).
    #[link_name = "SetLatch"]
    fn set_latch(latch: *mut pg_sys::Latch);
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_oauth_http_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = gucs::string(&gucs::HTTP_DATABASE).unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // As in the SECURITY DEFINER functions PostgREST calls: nothing a database user
    // creates in a schema on the default path can stand in for what pg_oauth calls.
    // SAFETY: a session setting, set before any transaction, by name and value.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    }
    let Some((queue, limits)) = start(&database) else {
        return;
    };
    serve_jobs(queue, limits);
}

/// Parse the address, load the limits and TLS, start the HTTP thread: the queue its requests
/// arrive on and the limits it reads, or None (after a WARNING) when the listener stays off.
fn start(database: &str) -> Option<(mpsc::Receiver<Job>, Arc<Limits>)> {
    let listen = gucs::string(&gucs::HTTP_LISTEN)?;
    let address = match listen.parse::<std::net::SocketAddr>() {
        Ok(address) => address,
        Err(_) => {
            // The worker then exits with 0, which unregisters it: a bad setting is not
            // retried forever.
            warning!("pg_oauth: pg_oauth.http_listen = '{listen}' is not an address:port; the HTTP listener is off");
            return None;
        }
    };
    let (jobs, queue) = mpsc::channel::<Job>();
    // SAFETY: this process's own latch, which lives as long as the process.
    let latch = unsafe { pg_sys::MyLatch } as usize;
    // SAFETY: SetLatch is async-signal-safe and made to be set by others (other processes,
    // signal handlers); it touches only the latch and the wakeup fd/signal. Called directly,
    // not through pgrx, whose guard rightly refuses other threads for everything else.
    let wake: Arc<dyn Fn() + Send + Sync> =
        Arc::new(move || unsafe { set_latch(latch as *mut pg_sys::Latch) });
    let limits = Arc::new(Limits::default());
    load_limits(&limits);
    // TLS asked for but not loadable: no listener rather than plain HTTP in its place.
    match load_tls() {
        Ok(tls) => limits.set_tls(tls),
        Err(why) => {
            warning!("pg_oauth: the HTTP listener's TLS: {why}; the HTTP listener is off");
            return None;
        }
    }
    let (ready, started) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("pg_oauth http".into())
        .spawn({
            let limits = limits.clone();
            move || server::serve(address, jobs, wake, limits, ready)
        });
    match (spawned, started.recv()) {
        (Ok(_), Ok(Ok(()))) => log!(
            "pg_oauth: HTTP listener on {address}{}, database {database}",
            if gucs::string(&gucs::HTTP_TLS_CERT).is_some() {
                " (TLS)"
            } else {
                ""
            }
        ),
        (_, Ok(Err(why))) => {
            warning!("pg_oauth: the HTTP listener cannot listen on {address}: {why}");
            return None;
        }
        _ => {
            warning!("pg_oauth: the HTTP listener's thread did not start");
            return None;
        }
    }
    Some((queue, limits))
}

/// Answer what the HTTP thread queues until SIGTERM or the postmaster's death; reload on
/// SIGHUP.
fn serve_jobs(queue: mpsc::Receiver<Job>, limits: Arc<Limits>) {
    while BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what every PostgreSQL process does on SIGHUP, outside a transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            load_limits(&limits);
            // A certificate that fails to load on reload leaves the previous one in use.
            match load_tls() {
                Ok(tls) => limits.set_tls(tls),
                Err(why) => warning!(
                    "pg_oauth: the HTTP listener's TLS: {why}; keeping the previous certificate"
                ),
            }
        }
        loop {
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        warning!(
                            "pg_oauth: the HTTP listener's thread ended; restarting the worker"
                        );
                        exit_for_restart()
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            answer_batch(batch);
        }
    }
    log!("pg_oauth: HTTP listener stopping");
}

/// The listener's reloadable settings, as this process now has them.
fn load_limits(limits: &Limits) {
    limits.set(
        gucs::HTTP_MAX_CONNECTIONS.get() as usize,
        gucs::HTTP_MAX_BODY.get() as usize,
        Duration::from_millis(gucs::HTTP_TIMEOUT.get() as u64),
    );
}

fn load_tls() -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let cert = gucs::string(&gucs::HTTP_TLS_CERT);
    let key = gucs::string(&gucs::HTTP_TLS_KEY);
    tls::load(cert.as_deref(), key.as_deref())
}

/// Exit code 1: the postmaster starts the worker again.
#[allow(unreachable_code)] // proc_exit is `-> !` in some versions' bindings, not in others
fn exit_for_restart() -> ! {
    // SAFETY: a normal process exit, outside any transaction.
    unsafe { pg_sys::proc_exit(1) };
    unreachable!("proc_exit does not return")
}

fn server_error() -> Reply {
    Reply {
        status: 500,
        headers: vec![("Cache-Control".into(), "no-store".into())],
        body: json!({
            "error": "server_error",
            "error_description": "the request failed; see the server log"
        }),
    }
}

/// Answer `batch` in one transaction, a subtransaction per request; send the answers once
/// it has committed.
fn answer_batch(batch: Vec<Job>) {
    // SAFETY: the start of a transaction, as BackgroundWorker::transaction does; it ends
    // below with a commit or, if the commit fails, an abort.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let mut replies: Vec<Reply> = batch.iter().map(in_subtransaction).collect();
    let committed = PgTryBuilder::new(|| {
        // SAFETY: ends the transaction started above; every subtransaction has ended.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        true
    })
    .catch_others(|_| false)
    .execute();
    if !committed {
        // SAFETY: the failed commit left the transaction aborted; this ends it.
        unsafe { pg_sys::AbortCurrentTransaction() };
        log!(
            "pg_oauth: the commit of {} HTTP requests failed",
            batch.len()
        );
        replies = batch.iter().map(|_| server_error()).collect();
    }
    for (job, reply) in batch.into_iter().zip(replies) {
        let _ = job.reply.send(reply);
    }
}

/// Answer `job` in a subtransaction (PL/pgSQL's exception-block sequence): an error rolls
/// back only this request's work and answers 500 (after a LOG line).
fn in_subtransaction(job: &Job) -> Reply {
    let _sensitive = redact::sensitive();
    // SAFETY: BeginInternalSubTransaction switches memory context and resource owner; both
    // are restored after the subtransaction ends, whichever way it ends.
    let (context, owner, level) = unsafe {
        let saved = (
            pg_sys::CurrentMemoryContext,
            pg_sys::CurrentResourceOwner,
            pg_sys::GetCurrentTransactionNestLevel(),
        );
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(saved.0);
        saved
    };
    let params = Params::new(Some(job.params.clone()));
    let request = http::Request {
        method: job.request.method.clone(),
        headers: job.request.headers.clone(),
        peer: Some(source(&job.request)),
    };
    let (endpoint, request) = (job.endpoint, &request);
    let answered =
        PgTryBuilder::new(|| http::handle(endpoint, request, &params).map_err(|e| e.to_string()))
            .catch_others(|caught| Err(caught_message(&caught)))
            .execute();
    // SAFETY: ends the subtransaction begun above; pgrx has flushed a caught error's state.
    // An error unwinds through subtransactions the handler began without ending them (its
    // own `atomically`): those are rolled back first, down to this request's, so the next
    // request and the commit find the transaction at the level they expect.
    let clean =
        answered.is_ok() && unsafe { pg_sys::GetCurrentTransactionNestLevel() } == level + 1;
    unsafe {
        if clean {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            while pg_sys::GetCurrentTransactionNestLevel() > level {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    match answered {
        Ok(reply) if clean => reply,
        Ok(_) => {
            log!("pg_oauth: an HTTP request to {endpoint:?} left a subtransaction open");
            server_error()
        }
        Err(why) => {
            // The message only: an error's detail may quote values (a key, a hash).
            log!("pg_oauth: an HTTP request to {endpoint:?} failed: {why}");
            server_error()
        }
    }
}

/// The request's source: the socket peer, or, for a peer listed in
/// `pg_oauth.http_trusted_proxies`, the address its `pg_oauth.http_client_address_header`
/// names (when it names one).
fn source(request: &http::Request) -> String {
    let peer = request.peer.clone().unwrap_or_default();
    let trusted = gucs::string(&gucs::HTTP_TRUSTED_PROXIES).is_some_and(|list| {
        let peer = peer.parse::<std::net::IpAddr>().ok();
        list.split(',')
            .filter_map(|p| p.trim().parse::<std::net::IpAddr>().ok())
            .any(|p| Some(p) == peer)
    });
    if trusted {
        if let Some(forwarded) =
            attempts::source_from_headers(&serde_json::Value::Object(request.headers.clone()))
        {
            return forwarded;
        }
    }
    peer
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
