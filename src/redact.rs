//! Statements that carry secrets stay out of the server log.
//!
//! With PostgreSQL's default `log_min_error_statement = error`, an ERROR logs the statement
//! that caused it, so a failing `SELECT oauth.auth_token('client_credentials', 'id',
//! '<secret>', 'bad-scope')` or `auth_verify('<token>')` would write the secret or token to
//! the log. PostgreSQL's answer is `errhidestmt()`; pgrx raises errors for us, so the flag
//! is set from an `emit_log_hook` instead: for every ERROR raised while a function that
//! takes secrets runs (ours, or one PostgreSQL raises inside it), the statement and the
//! CONTEXT lines (which quote PL/pgSQL statements) are left out of the log. The client
//! still gets the error. README "Security model" lists what this cannot cover
//! (`log_statement`, `log_min_duration_statement`, errors outside pg_oauth's functions).

use std::cell::Cell;

use pgrx::pg_sys;

thread_local! {
    /// Functions that take secrets currently running in this backend.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// One of them ended by an error that has not been logged yet (pgrx logs it after
    /// unwinding out of our frames).
    static PENDING: Cell<bool> = const { Cell::new(false) };
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
    unsafe {
        if !edata.is_null() && (*edata).elevel >= pg_sys::PGERROR as i32 {
            if DEPTH.get() > 0 || PENDING.get() {
                (*edata).hide_stmt = true;
                (*edata).hide_ctx = true;
            }
            PENDING.set(false);
        }
        if let Some(previous) = PREVIOUS_HOOK {
            previous(edata);
        }
    }
}
