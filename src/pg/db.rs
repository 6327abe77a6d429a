//! SPI access through statements that are parsed and planned once per backend.
//!
//! Every statement is a `static`, fully schema-qualified, with values passed only as
//! parameters. Plans are kept with `SPI_keepplan`; PostgreSQL's plan cache revalidates them
//! when the tables change, and replans if the search_path differs from when they were made.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, BuiltinOid as PgBuiltInOids, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};

pub struct Statement {
    pub sql: &'static str,
    pub args: &'static [PgBuiltInOids],
}

thread_local! {
    static PLANS: RefCell<HashMap<usize, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

impl Statement {
    pub const fn new(sql: &'static str, args: &'static [PgBuiltInOids]) -> Self {
        Statement { sql, args }
    }

    fn plan(
        &'static self,
        client: &SpiClient<'_>,
        mutating: bool,
    ) -> SpiResult<Rc<OwnedPreparedStatement>> {
        let key = self as *const Statement as usize;
        if let Some(plan) = PLANS.with_borrow(|plans| plans.get(&key).cloned()) {
            return Ok(plan);
        }
        let oids: Vec<PgOid> = self.args.iter().map(|oid| PgOid::BuiltIn(*oid)).collect();
        let prepared = if mutating {
            client.prepare_mut(self.sql, &oids)?
        } else {
            client.prepare(self.sql, &oids)?
        };
        let plan = Rc::new(prepared.keep());
        PLANS.with_borrow_mut(|plans| plans.insert(key, plan.clone()));
        Ok(plan)
    }

    /// Run a read-only statement.
    pub fn query<'conn>(
        &'static self,
        client: &SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
    ) -> SpiResult<SpiTupleTable<'conn>> {
        let plan = self.plan(client, false)?;
        client.select(&*plan, None, args)
    }

    /// Run a statement that writes.
    pub fn execute<'conn>(
        &'static self,
        client: &mut SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
    ) -> SpiResult<SpiTupleTable<'conn>> {
        let plan = self.plan(client, true)?;
        client.update(&*plan, None, args)
    }
}

/// Run `f` with `search_path = pg_catalog, pg_temp`, as a function's `SET search_path`
/// would, for functions that skip the SET clause on their fast path but may fall back to
/// SQL.
pub fn with_safe_search_path<R>(f: impl FnOnce() -> R) -> R {
    with_setting(c"search_path", "pg_catalog, pg_temp", f)
}

/// Run `f` with setting `name` at `value`, as a function's `SET` clause would: restored
/// when `f` returns, and by the transaction if an ERROR unwinds through it.
pub fn with_setting<R>(name: &std::ffi::CStr, value: &str, f: impl FnOnce() -> R) -> R {
    let value = std::ffi::CString::new(value).expect("a setting's value has no NUL");
    // SAFETY: the same calls fmgr makes for a function's SET clause.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        let result = f();
        pg_sys::AtEOXact_GUC(true, level);
        result
    }
}
