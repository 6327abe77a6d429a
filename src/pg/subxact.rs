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

/// The state a subtransaction is begun from, restored when it ends.
struct Outer {
    context: pg_sys::MemoryContext,
    owner: pg_sys::ResourceOwner,
    level: i32,
}

fn begin() -> Outer {
    // SAFETY: BeginInternalSubTransaction switches memory context and resource owner; both
    // are restored by `end`, however the subtransaction ends.
    unsafe {
        let outer = Outer {
            context: pg_sys::CurrentMemoryContext,
            owner: pg_sys::CurrentResourceOwner,
            level: pg_sys::GetCurrentTransactionNestLevel(),
        };
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(outer.context);
        outer
    }
}

/// End the subtransaction begun from `outer`: keep its work, or roll it back together with
/// any subtransaction left open inside it, down to the level it was begun at.
fn end(outer: Outer, keep: bool) {
    // SAFETY: ends the subtransaction `begin` began (pgrx has flushed a caught error's
    // state), and those left open inside it; then restores what `begin` saved.
    unsafe {
        if keep {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            while pg_sys::GetCurrentTransactionNestLevel() > outer.level {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
        }
        pg_sys::MemoryContextSwitchTo(outer.context);
        pg_sys::CurrentResourceOwner = outer.owner;
    }
}

/// Run `f` in a subtransaction: its work stays only if it returns `Ok`. An ERROR raised
/// inside is not caught: it aborts the transaction, which rolls the subtransaction back.
pub fn atomically<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let outer = begin();
    let result = f();
    end(outer, result.is_ok());
    result
}

/// Run `f` in a subtransaction. Its work stays when it returns `Ok` and raises nothing;
/// it is rolled back when it returns `Err` (given back as `Ok(Err(..))`) or raises an ERROR
/// (`Err(Raised)`). Subtransactions `f` began and left open when an ERROR unwound through
/// them are rolled back too, so the caller finds the transaction at the level it was.
pub fn attempt<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<Result<T, E>, Raised> {
    let outer = begin();
    // Unwind-safe as far as PostgreSQL's state goes (rolled back below); Rust state `f`
    // touched on its way to an ERROR is its caller's to judge, as with any ERROR.
    let f = std::panic::AssertUnwindSafe(f);
    let mut outcome = PgTryBuilder::new(move || Ok(f()))
        .catch_others(|caught| Err(raised(&caught)))
        .execute();
    // SAFETY: reads this backend's nesting level.
    let nested = unsafe { pg_sys::GetCurrentTransactionNestLevel() } != outer.level + 1;
    if nested && outcome.is_ok() {
        // Work done in a subtransaction nobody ended is not ours to keep.
        outcome = Err(Raised {
            code: PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            message: "a subtransaction was left open".into(),
        });
    }
    end(outer, matches!(outcome, Ok(Ok(_))));
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
