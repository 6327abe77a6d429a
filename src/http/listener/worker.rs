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

use super::server::{self, Job, Limits};
use super::tls;
use crate::api::http::{self, Params, Reply};
use crate::authn::attempts;
use crate::config::gucs;
use crate::pg::backend;
use crate::pg::redact;
use crate::pg::subxact;

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
    backend::set_session_setting(c"search_path", "pg_catalog, pg_temp");
    let Some((queue, limits)) = start(&database) else {
        return;
    };
    if !BackgroundWorker::transaction(|| backend::extension_installed(c"pg_oauth")) {
        warning!(
            "pg_oauth: the HTTP listener's database \"{database}\" has no pg_oauth extension; \
             requests are answered 500 until CREATE EXTENSION pg_oauth is run there \
             (or pg_oauth.http_database names the database that has it, and the server restarts)"
        );
    }
    serve_jobs(queue, limits);
}

/// Load the limits and TLS, start the HTTP thread on the postmaster's socket: the queue its
/// requests arrive on and the limits it reads, or None (after a WARNING) when it cannot run.
fn start(database: &str) -> Option<(mpsc::Receiver<Job>, Arc<Limits>)> {
    let fd = super::listen_fd()?;
    let listen = gucs::string(&gucs::HTTP_LISTEN).unwrap_or_default();
    // Bounded: the HTTP thread answers 503 when it is full (it cannot be, with QUEUE
    // permits in flight; the bound is the second line of defence).
    let (jobs, queue) = mpsc::sync_channel::<Job>(server::QUEUE);
    // SAFETY: this process's own latch, which lives as long as the process.
    let latch = unsafe { pg_sys::MyLatch } as usize;
    // SAFETY: SetLatch is async-signal-safe and made to be set by others (other processes,
    // signal handlers); it touches only the latch and the wakeup fd/signal. Called directly,
    // not through pgrx, whose guard rightly refuses other threads for everything else.
    let wake: Arc<dyn Fn() + Send + Sync> =
        Arc::new(move || unsafe { set_latch(latch as *mut pg_sys::Latch) });
    let limits = Arc::new(Limits::default());
    load_limits(&limits);
    // TLS asked for but not loadable: connections are closed (never plain HTTP in TLS's
    // place) until a reload loads it.
    match load_tls() {
        Ok(security) => limits.set_security(security),
        Err(why) => warning!(
            "pg_oauth: the HTTP listener's TLS: {why}; connections are refused until a reload (SELECT pg_reload_conf()) loads a certificate and key"
        ),
    }
    let (ready, started) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("pg_oauth http".into())
        .spawn({
            let limits = limits.clone();
            move || server::serve(fd, jobs, wake, limits, ready)
        });
    match (spawned, started.recv()) {
        (Ok(_), Ok(Ok(()))) => log!(
            "pg_oauth: HTTP listener on {listen}{}, database {database}",
            if gucs::string(&gucs::HTTP_TLS_CERT).is_some() {
                " (TLS)"
            } else {
                ""
            }
        ),
        (_, Ok(Err(why))) => {
            warning!("pg_oauth: the HTTP listener cannot accept on {listen}: {why}");
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
            // A certificate that fails to load on reload leaves the previous one in use (or
            // connections still refused, if none ever loaded).
            match load_tls() {
                Ok(security) => limits.set_security(security),
                Err(why) => warning!(
                    "pg_oauth: the HTTP listener's TLS: {why}; {}",
                    match limits.security() {
                        server::Security::Unavailable => "connections are still refused",
                        _ => "keeping the previous certificate",
                    }
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
    limits.set_per_source(
        gucs::HTTP_MAX_CONNECTIONS_PER_SOURCE.get() as usize,
        gucs::string(&gucs::HTTP_TRUSTED_PROXIES),
    );
    // No request waits long for a lock: a transaction left open on a row it needs must not
    // stall the batch, the worker, and everyone it serves.
    backend::set_session_setting(
        c"lock_timeout",
        &format!("{}ms", gucs::HTTP_LOCK_TIMEOUT.get()),
    );
}

fn load_tls() -> Result<server::Security, String> {
    let cert = gucs::string(&gucs::HTTP_TLS_CERT);
    let key = gucs::string(&gucs::HTTP_TLS_KEY);
    Ok(match tls::load(cert.as_deref(), key.as_deref())? {
        Some(config) => server::Security::Tls(config),
        None => server::Security::Plain,
    })
}

/// Exit code 1: the postmaster starts the worker again.
#[allow(unreachable_code)] // proc_exit is `-> !` in some versions' bindings, not in others
fn exit_for_restart() -> ! {
    // SAFETY: a normal process exit, outside any transaction.
    unsafe { pg_sys::proc_exit(1) };
    unreachable!("proc_exit does not return")
}

fn server_error() -> Reply {
    Reply::error(
        500,
        "server_error",
        "the request failed; see the server log",
        None,
    )
}

/// The answer while the listener's database lacks the extension: what the operator must do,
/// without internals (the WARNING at start names the database).
fn not_installed() -> Reply {
    Reply::error(
        500,
        "server_error",
        "pg_oauth is not installed in the listener's database (pg_oauth.http_database)",
        None,
    )
}

/// A request that gave up waiting for a lock another transaction holds (lock_timeout), or
/// was chosen as a deadlock's victim.
fn lock_busy() -> Reply {
    Reply::error(
        503,
        "temporarily_unavailable",
        "another transaction holds what this request needs; try again shortly",
        Some(1),
    )
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
    let mut replies: Vec<Reply> = if backend::extension_installed(c"pg_oauth") {
        batch.iter().map(in_subtransaction).collect()
    } else {
        batch.iter().map(|_| not_installed()).collect()
    };
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
/// back only this request's work and answers 500 (after a LOG line), or 503 when it gave up
/// waiting for a lock.
fn in_subtransaction(job: &Job) -> Reply {
    let _sensitive = redact::sensitive();
    let Some(body) = server::params(&job.content_type, &job.body) else {
        return Reply::error(
            400,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded or a JSON object (of at most 256 values)",
            None,
        );
    };
    let params = Params::new(Some(body));
    let request = http::Request {
        transport: http::Transport::Listener,
        method: job.request.method.clone(),
        headers: job.request.headers.clone(),
        peer: Some(source(&job.request)),
    };
    let endpoint = job.endpoint;
    let answered = subxact::attempt(|| http::handle(endpoint, &request, &params));
    match answered {
        Ok(Ok(reply)) => reply,
        Ok(Err(why)) => {
            log!("pg_oauth: an HTTP request to {endpoint:?} failed: {why}");
            server_error()
        }
        Err(raised) if raised.is_lock_wait() => {
            log!("pg_oauth: an HTTP request to {endpoint:?} gave up waiting for a lock");
            lock_busy()
        }
        Err(raised) => {
            // The message only: an error's detail may quote values (a key, a hash).
            log!(
                "pg_oauth: an HTTP request to {endpoint:?} failed: {}",
                raised.message
            );
            server_error()
        }
    }
}

/// The request's source (authn/attempts.rs decides it from the socket peer, the headers and
/// `pg_oauth.http_trusted_proxies`).
fn source(request: &http::Request) -> String {
    let peer = request.peer.as_deref().and_then(|p| p.parse().ok());
    let Some(peer) = peer else {
        return request.peer.clone().unwrap_or_default();
    };
    attempts::source_of_peer(
        peer,
        &serde_json::Value::Object(request.headers.clone()),
        gucs::string(&gucs::HTTP_TRUSTED_PROXIES).as_deref(),
    )
}
