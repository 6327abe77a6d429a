//! The PostgreSQL side of a listener worker: its main thread waits on its latch, and runs
//! each request the HTTP thread hands over in a transaction of its own, through the SQL
//! function PostgREST would call, with the socket peer as the request's source. An error in
//! a request aborts that transaction and answers 500; the worker goes on.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::pg_sys::BuiltinOid::{JSONBOID, TEXTOID};
use pgrx::prelude::*;
use serde_json::Value;

use super::server::{self, Job, Limits, Reply};
use super::Endpoint;
use crate::api::postgrest;
use crate::config::gucs;
use crate::error::Result;
use crate::pg::db::Statement;

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
    let Some(listen) = gucs::string(&gucs::HTTP_LISTEN) else {
        return;
    };
    let address = match listen.parse::<std::net::SocketAddr>() {
        Ok(address) => address,
        Err(_) => {
            // Exiting with 0 unregisters the worker: a bad setting is not retried forever.
            warning!("pg_oauth: pg_oauth.http_listen = '{listen}' is not an address:port; the HTTP listener is off");
            return;
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
    let limits = Limits {
        max_connections: gucs::HTTP_MAX_CONNECTIONS.get() as usize,
        max_body: gucs::HTTP_MAX_BODY.get() as usize,
        timeout: Duration::from_millis(gucs::HTTP_TIMEOUT.get() as u64),
    };
    let (ready, started) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("pg_oauth http".into())
        .spawn(move || server::serve(address, jobs, wake, limits, ready));
    match (spawned, started.recv()) {
        (Ok(_), Ok(Ok(()))) => log!("pg_oauth: HTTP listener on {address}, database {database}"),
        (_, Ok(Err(why))) => {
            warning!("pg_oauth: the HTTP listener cannot listen on {address}: {why}");
            return;
        }
        _ => {
            warning!("pg_oauth: the HTTP listener's thread did not start");
            return;
        }
    }
    while BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what every PostgreSQL process does on SIGHUP, outside a transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        loop {
            let job = match queue.try_recv() {
                Ok(job) => job,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    warning!("pg_oauth: the HTTP listener's thread ended; restarting the worker");
                    exit_for_restart()
                }
            };
            let reply = in_transaction(&job).unwrap_or_else(|| Reply {
                status: 500,
                headers: vec![("cache-control".into(), "no-store".into())],
                body: r#"{"error":"server_error","error_description":"the request failed; see the server log"}"#.into(),
            });
            let _ = job.reply.send(reply);
        }
    }
    log!("pg_oauth: HTTP listener stopping");
}

/// Exit code 1: the postmaster starts the worker again.
#[allow(unreachable_code)] // proc_exit is `-> !` in some versions' bindings, not in others
fn exit_for_restart() -> ! {
    // SAFETY: a normal process exit, outside any transaction.
    unsafe { pg_sys::proc_exit(1) };
    unreachable!("proc_exit does not return")
}

/// Answer `job` in a transaction of its own; None (after a LOG line) when it failed.
fn in_transaction(job: &Job) -> Option<Reply> {
    // SAFETY: the start of a transaction, as BackgroundWorker::transaction does; it ends below
    // with a commit or, after an error, an abort.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    // Only this thread touches the job while it is answered.
    let job_ref = std::panic::AssertUnwindSafe(job);
    let answered = PgTryBuilder::new(move || answer(&job_ref).ok())
        .catch_others(|_| None)
        .execute();
    // SAFETY: ends the transaction started above (an error left it aborted).
    unsafe {
        match answered {
            Some(_) => {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            None => pg_sys::AbortCurrentTransaction(),
        }
    }
    if answered.is_none() {
        log!("pg_oauth: an HTTP request to {:?} failed", job.endpoint);
    }
    answered
}

static SET_REQUEST: Statement = Statement::new(
    "SELECT pg_catalog.set_config('request.method', $1, true),
            pg_catalog.set_config('request.headers', $2, true)",
    &[TEXTOID, TEXTOID],
);
static GET_RESPONSE: Statement = Statement::new(
    "SELECT pg_catalog.current_setting('response.status', true),
            pg_catalog.current_setting('response.headers', true)",
    &[],
);
static TOKEN: Statement = Statement::new("SELECT oauth.http_token($1)::text", &[JSONBOID]);
static REVOKE: Statement = Statement::new("SELECT oauth.http_revoke($1)::text", &[JSONBOID]);
static INTROSPECT: Statement =
    Statement::new("SELECT oauth.http_introspect($1)::text", &[JSONBOID]);
static JWKS: Statement = Statement::new("SELECT oauth.http_jwks()::text", &[]);
static METADATA: Statement = Statement::new("SELECT oauth.http_metadata()::text", &[]);
static SMART: Statement = Statement::new("SELECT oauth.http_smart_configuration()::text", &[]);

/// Set the request as PostgREST would, call the endpoint's function, read the response
/// settings it left.
fn answer(job: &Job) -> Result<Reply> {
    let headers = Value::Object(job.headers.clone()).to_string();
    let params = pgrx::JsonB(job.params.clone());
    Spi::connect_mut(|spi| -> Result<Reply> {
        SET_REQUEST.query(spi, &[job.method.as_str().into(), headers.as_str().into()])?;
        let body: Option<String> = postgrest::with_peer(job.peer.ip().to_string(), || {
            let table = match job.endpoint {
                Endpoint::Token => TOKEN.execute(spi, &[params.into()]),
                Endpoint::Revoke => REVOKE.execute(spi, &[params.into()]),
                Endpoint::Introspect => INTROSPECT.execute(spi, &[params.into()]),
                Endpoint::Jwks => JWKS.query(spi, &[]),
                Endpoint::Metadata => METADATA.query(spi, &[]),
                Endpoint::SmartConfiguration => SMART.query(spi, &[]),
            }?;
            table.first().get::<String>(1)
        })?;
        let settings = GET_RESPONSE.query(spi, &[])?.first();
        let status = settings
            .get::<String>(1)?
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(200);
        let headers = settings
            .get::<String>(2)?
            .and_then(|h| serde_json::from_str::<Value>(&h).ok())
            .map(response_headers)
            .unwrap_or_default();
        Ok(Reply {
            status,
            headers,
            body: body.unwrap_or_else(|| "{}".into()),
        })
    })
}

/// PostgREST's `response.headers`: an array of one-member objects.
fn response_headers(value: Value) -> Vec<(String, String)> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| match item {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .flat_map(|map| {
            map.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
        })
        .collect()
}
