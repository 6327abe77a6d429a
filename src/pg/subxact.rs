//! Subtransactions, as PL/pgSQL's exception blocks run them: work that can be undone alone,
//! whether it fails by returning an error or by raising a PostgreSQL ERROR. The one place that
//! begins, releases and rolls back subtransactions (memory context, resource owner, nesting
//! level).

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// An ERROR raised inside `attempt`, after its subtransaction was rolled back.
#[derive(Debug, Clone)]
pub struct Raised {
    pub code: PgSqlErrorCode,
    /// The message only: an error's detail may quote values (a key, a hash).
    pub message: String,
}

impl Raised {
    /// It waited too long for a lock (lock_timeout) or lost a deadlock: worth a retry.
    pub fn is_lock_wait(&self) -> bool {
        matches!(
            self.code,
            PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
                | PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED
        )
    }
}

/// Run `f` in a subtransaction. Its work stays when it returns `Ok` and raises nothing;
/// it is rolled back when it returns `Err` (given back as `Ok(Err(..))`) or raises an ERROR
/// (`Err(Raised)`). Subtransactions `f` began and left open when an ERROR unwound through
/// them are rolled back too, so the caller finds the transaction at the level it was.
pub fn attempt<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<Result<T, E>, Raised> {
    // SAFETY: BeginInternalSubTransaction switches memory context and resource owner; both
    // are restored below, however the subtransaction ends.
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
    // Unwind-safe as far as PostgreSQL's state goes (rolled back below); Rust state `f`
    // touched on its way to an ERROR is its caller's to judge, as with any ERROR.
    let f = std::panic::AssertUnwindSafe(f);
    let mut outcome = PgTryBuilder::new(move || Ok(f()))
        .catch_others(|caught| Err(raised(&caught)))
        .execute();
    // SAFETY: reads this backend's nesting level.
    let nested = unsafe { pg_sys::GetCurrentTransactionNestLevel() } != level + 1;
    if nested && outcome.is_ok() {
        // Work done in a subtransaction nobody ended is not ours to keep.
        outcome = Err(Raised {
            code: PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            message: "a subtransaction was left open".into(),
        });
    }
    // SAFETY: ends the subtransaction begun above (pgrx has flushed a caught error's state),
    // and any left open inside it, down to the level we started at.
    unsafe {
        if matches!(outcome, Ok(Ok(_))) {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            while pg_sys::GetCurrentTransactionNestLevel() > level {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    outcome
}

fn raised(caught: &CaughtError) -> Raised {
    let report = match caught {
        CaughtError::PostgresError(report)
        | CaughtError::ErrorReport(report)
        | CaughtError::RustPanic {
            ereport: report, ..
        } => report,
    };
    Raised {
        code: report.sql_error_code(),
        message: report.message().to_owned(),
    }
}
