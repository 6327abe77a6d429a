//! The PostgreSQL side of a listener worker: its main thread waits on its latch and
//! answers the requests the HTTP thread hands over through the handler PostgREST's
//! functions call (http/handler.rs), each counted by the source its socket peer gives
//! (authn/source.rs). On SIGTERM it stops the HTTP thread's accepting and answers what is
//! still in flight before it ends.
//!
//! The requests waiting when the worker looks (at most [`BATCH`]) share one transaction,
//! each in a subtransaction of its own, and are answered after it commits: every answer
//! still follows a durable commit of what it reports (synchronous_commit as configured),
//! but one commit serves them all, as group commit does for concurrent sessions. An error
//! in a request rolls back its subtransaction only and answers it 500; if the commit itself
//! fails, every request of the batch gets 500. The worker goes on either way.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::Value;

use super::limits::{Limits, Security};
use super::request::{self, Handoff, Job};
use super::server;
use crate::authn::mtls;
use crate::authn::source::{self, Edge};
use crate::config::{gucs, pages};
use crate::http::handler;
use crate::http::message::{Params, Reply, Request, Transport};
use crate::http::tls;
use crate::pg::backend;
use crate::pg::redact;
use crate::pg::shmem::stats;
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
    let Some(running) = start(&database) else {
        return;
    };
    if !BackgroundWorker::transaction(|| backend::extension_installed(c"pg_oauth")) {
        warning!(
            "pg_oauth: the HTTP listener's database \"{database}\" has no pg_oauth extension; \
             requests are answered 500 until CREATE EXTENSION pg_oauth is run there \
             (or pg_oauth.http_database names the database that has it, and the server restarts)"
        );
    }
    serve_jobs(running);
}

/// A running HTTP thread, as the main thread sees it.
struct Running {
    queue: mpsc::Receiver<Job>,
    limits: Arc<Limits>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Load the limits and TLS, start the HTTP thread on the postmaster's socket, or return None
/// (after a WARNING) when it cannot run.
fn start(database: &str) -> Option<Running> {
    let fd = super::listen_fd()?;
    let listen = gucs::string(&gucs::HTTP_LISTEN).unwrap_or_default();
    // Bounded: the HTTP thread answers 503 when it is full (it cannot be, with QUEUE
    // permits in flight; the bound is the second line of defence).
    let (jobs, queue) = mpsc::sync_channel::<Job>(request::QUEUE);
    // SAFETY: this process's own latch, which lives as long as the process.
    let latch = unsafe { pg_sys::MyLatch } as usize;
    // SAFETY: SetLatch is async-signal-safe and made to be set by others (other processes,
    // signal handlers); it touches only the latch and the wakeup fd/signal. Called directly,
    // not through pgrx, whose guard rightly refuses other threads for everything else.
    let wake = Box::new(move || unsafe { set_latch(latch as *mut pg_sys::Latch) });
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
    let handoff = Handoff {
        jobs,
        wake,
        limits: limits.clone(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(request::QUEUE)),
        // In a transaction: the first backend to need shared memory makes it, under a lock.
        recorder: BackgroundWorker::transaction(stats::recorder),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (ready, started) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("pg_oauth http".into())
        .spawn(move || server::serve(fd, handoff, stopped, ready));
    match (spawned, started.recv()) {
        (Ok(_), Ok(Ok(()))) => {
            let tls = gucs::string(&gucs::HTTP_TLS_CERT).is_some();
            log!(
                "pg_oauth: HTTP listener on {listen}{}, database {database}",
                if tls { " (TLS)" } else { "" }
            )
        }
        (_, Ok(Err(why))) => {
            warning!("pg_oauth: the HTTP listener cannot accept on {listen}: {why}");
            return None;
        }
        _ => {
            warning!("pg_oauth: the HTTP listener's thread did not start");
            return None;
        }
    }
    Some(Running {
        queue,
        limits,
        stop,
    })
}

/// Answer what the HTTP thread queues until SIGTERM or the postmaster's death; reload on
/// SIGHUP. On SIGTERM: stop accepting, answer the requests the open connections still
/// carry (for at most 10 s), then end.
fn serve_jobs(running: Running) {
    while BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
        if BackgroundWorker::sighup_received() {
            reload(&running.limits);
        }
        while let Some(batch) = take_batch(&running.queue, None) {
            answer_batch(batch);
        }
    }
    log!("pg_oauth: HTTP listener stopping");
    let _ = running.stop.send(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match take_batch(&running.queue, Some(Duration::from_millis(50))) {
            Some(batch) => answer_batch(batch),
            None if running_thread_ended(&running.queue) => break,
            None => {}
        }
    }
}

/// The requests waiting (at most BATCH), after waiting up to `wait` for the first; None when
/// there are none. A thread that ended while the worker serves means a restart.
fn take_batch(queue: &mpsc::Receiver<Job>, wait: Option<Duration>) -> Option<Vec<Job>> {
    let first = match wait {
        Some(wait) => queue.recv_timeout(wait).ok()?,
        None => match queue.try_recv() {
            Ok(job) => job,
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => {
                warning!("pg_oauth: the HTTP listener's thread ended; restarting the worker");
                exit_for_restart()
            }
        },
    };
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Whether the HTTP thread has ended (every connection closed, after a stop).
fn running_thread_ended(queue: &mpsc::Receiver<Job>) -> bool {
    matches!(queue.try_recv(), Err(mpsc::TryRecvError::Disconnected))
}

/// SIGHUP: what every PostgreSQL process does, then the listener's own settings.
fn reload(limits: &Limits) {
    // SAFETY: what every PostgreSQL process does on SIGHUP, outside a transaction.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    load_limits(limits);
    // A certificate that fails to load on reload leaves the previous one in use (or
    // connections still refused, if none ever loaded).
    match load_tls() {
        Ok(security) => limits.set_security(security),
        Err(why) => warning!(
            "pg_oauth: the HTTP listener's TLS: {why}; {}",
            match limits.security() {
                Security::Unavailable => "connections are still refused",
                _ => "keeping the previous certificate",
            }
        ),
    }
}

/// The listener's reloadable settings, as this process now has them.
fn load_limits(limits: &Limits) {
    limits.set(
        gucs::HTTP_MAX_CONNECTIONS.get() as usize,
        gucs::HTTP_MAX_BODY.get() as usize,
        Duration::from_millis(gucs::HTTP_TIMEOUT.get() as u64),
    );
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    limits.sandbox.store(pages::HTTP_SANDBOX.get(), relaxed);
    limits.console.store(pages::HTTP_CONSOLE.get(), relaxed);
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

fn load_tls() -> Result<Security, String> {
    let cert = gucs::string(&gucs::HTTP_TLS_CERT);
    let key = gucs::string(&gucs::HTTP_TLS_KEY);
    let client_certificates = gucs::HTTP_TLS_CLIENT_CERTIFICATES.get();
    Ok(
        match tls::load(cert.as_deref(), key.as_deref(), client_certificates)? {
            Some(config) => Security::Tls(config),
            None => Security::Plain,
        },
    )
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
    let body = match request::params(&job.content_type, &job.body) {
        Ok(body) => body,
        Err(description) => return Reply::error(400, "invalid_request", &description, None),
    };
    let params = Params::new(Some(body));
    let edge = Edge::Listener(job.peer);
    let request = Request {
        transport: Transport::Listener,
        method: Some(job.method.clone()),
        source: source::resolve(edge, &Value::Object(job.headers.clone())),
        client_certificate: mtls::presented(
            edge,
            job.certificate.as_deref().cloned(),
            &job.headers,
        ),
        headers: job.headers.clone(),
    };
    let endpoint = job.endpoint;
    let answered = subxact::attempt(|| handler::handle(endpoint, &request, &params));
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
