//! Statements that carry secrets stay out of the server log.
//!
//! (Errors and warnings alike; see `hide_sensitive_statements`.)
//!
//! With PostgreSQL's default `log_min_error_statement = error`, an ERROR logs the statement
//! that caused it, so a failing `SELECT oauth.auth_token('client_credentials', 'id',
//! '<secret>', 'bad-scope')` or `auth_verify('<token>')` would write the secret or token to
//! the log. PostgreSQL's answer is `errhidestmt()`; pgrx raises errors for us, so the flag
//! is set from an `emit_log_hook` instead: for every ERROR raised while a function that
//! takes secrets runs (ours, or one PostgreSQL raises inside it), the statement and the
//! CONTEXT lines (which quote PL/pgSQL statements) are left out of the log. So are those of
//! errors raised before such a function runs (permission denied for it, no function with
//! those argument types) in a statement that names one. The client still gets the error.
//! README "Security model" lists what this cannot cover (`log_statement`,
//! `log_min_duration_statement`, a session that has not loaded pg_oauth yet unless it is in
//! `session_preload_libraries`, other statements that carry secrets).

use std::cell::Cell;

use pgrx::pg_sys;

thread_local! {
    /// Functions that take secrets currently running in this backend.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// One of them ended by an error that has not been logged yet (pgrx logs it after
    /// unwinding out of our frames).
    static PENDING: Cell<bool> = const { Cell::new(false) };
    /// The statement marked as carrying a secret (`statement_carries_secrets`): its text's
    /// address and its start time, which together tell one statement from the next.
    static MARKED: Cell<Option<(usize, i64)>> = const { Cell::new(None) };
}

/// The statement running now, told apart from the ones before and after it.
fn current_statement() -> Option<(usize, i64)> {
    // SAFETY: reads this backend's globals: the statement's text pointer and start time.
    unsafe {
        let text = pg_sys::debug_query_string;
        (!text.is_null()).then(|| (text as usize, pg_sys::GetCurrentStatementStartTimestamp()))
    }
}

/// Mark the statement running as one that carries a secret (a client secret written to
/// oauth.client in plaintext, say by an INSERT that then fails a check constraint): its
/// errors and warnings leave it out of the log.
pub fn statement_carries_secrets() {
    MARKED.set(current_statement());
}

static mut PREVIOUS_HOOK: pg_sys::emit_log_hook_type = None;

/// Marks the running function as one whose statement carries secrets; hold it for the
/// whole call.
#[must_use]
pub struct Sensitive(());

pub fn sensitive() -> Sensitive {
    DEPTH.set(DEPTH.get() + 1);
    Sensitive(())
}

impl Drop for Sensitive {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get().saturating_sub(1));
        if std::thread::panicking() {
            PENDING.set(true);
        }
    }
}

/// The functions whose arguments are secrets or tokens (the SQL ones and the HTTP ones).
const TAKING_SECRETS: [&str; 7] = [
    "auth_token",
    "auth_verify",
    "auth_introspect",
    "auth_revoke",
    "http_token",
    "http_revoke",
    "http_introspect",
];

/// Whether the statement being run names one of them (ASCII case-insensitively: SQL
/// identifiers fold case, and quoted names are these exact ones), or names pg_oauth's schema
/// and a secret (a write of oauth.client's secret that fails before its trigger runs).
fn names_a_function_taking_secrets() -> bool {
    // SAFETY: debug_query_string is NULL or the NUL-terminated text of the statement this
    // backend is running, valid while it runs (and so while its error is emitted).
    let statement = unsafe {
        let text = pg_sys::debug_query_string;
        if text.is_null() {
            return false;
        }
        std::ffi::CStr::from_ptr(text).to_bytes()
    };
    let names = |name: &str| {
        statement
            .windows(name.len())
            .any(|w| w.eq_ignore_ascii_case(name.as_bytes()))
    };
    TAKING_SECRETS.iter().any(|name| names(name)) || (names("oauth") && names("secret"))
}

/// Install the hook (from `_PG_init`, once per backend).
pub fn init() {
    // SAFETY: _PG_init runs once per backend, before any of our functions; hooks are
    // process-local and chained as PostgreSQL's own modules do.
    unsafe {
        PREVIOUS_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(hide_sensitive_statements);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn hide_sensitive_statements(edata: *mut pg_sys::ErrorData) {
    // SAFETY: PostgreSQL passes the ErrorData being emitted.
    // Warnings too: with log_min_error_statement = warning, a WARNING pg_oauth raises
    // inside auth_token would log the statement, secret and all.
    unsafe {
        if !edata.is_null() && (*edata).elevel >= pg_sys::WARNING as i32 {
            if DEPTH.get() > 0
                || PENDING.get()
                || MARKED.get().is_some_and(|m| Some(m) == current_statement())
                || names_a_function_taking_secrets()
            {
                (*edata).hide_stmt = true;
                (*edata).hide_ctx = true;
            }
            if (*edata).elevel >= pg_sys::PGERROR as i32 {
                PENDING.set(false);
            }
        }
        if let Some(previous) = PREVIOUS_HOOK {
            previous(edata);
        }
    }
}
