//! Reads under a [`Fresh`] snapshot rather than the caller's: the statement's snapshot —
//! or, under REPEATABLE READ, the transaction's — can be older than a change whose
//! invalidation this backend already accepted (see cache.rs). pgrx's SPI wrappers use the
//! caller's snapshot, so this runs kept plans with `SPI_execute_snapshot`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;

use crate::error::{OAuthError, Result};
use crate::pg::cache::Fresh;
use crate::pg::db::Statement;

thread_local! {
    /// Plans for fresh reads, kept for the backend's life (SPI_keepplan), by statement.
    static PLANS: RefCell<HashMap<usize, NonNull<pg_sys::_SPI_plan>>> = RefCell::new(HashMap::new());
}

/// One row of a fresh read.
pub struct Row {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl Row {
    /// Column `ordinal` (1-based) as a Rust value, copied out of SPI's memory.
    pub fn get<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Result<Option<T>> {
        let ordinal = i32::try_from(ordinal).map_err(|_| failed())?;
        // SAFETY: tuple and desc come from SPI_tuptable of the query that produced this row
        // and are valid until the caller's SPI connection runs another query.
        unsafe {
            if ordinal < 1 || ordinal > (*self.desc).natts {
                return Err(failed());
            }
            let mut isnull = false;
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, ordinal, &mut isnull);
            let oid = pg_sys::SPI_gettypeid(self.desc, ordinal);
            if !T::is_compatible_with(oid) {
                return Err(failed());
            }
            Ok(T::from_polymorphic_datum(datum, isnull, oid))
        }
    }
}

impl Row {
    /// Column `name` as a Rust value (None for SQL NULL).
    pub fn get_by_name<T: FromDatum + IntoDatum>(&self, name: &str) -> Result<Option<T>> {
        let name = CString::new(name).map_err(|_| failed())?;
        // SAFETY: desc is this row's descriptor (see `get`); SPI_fnumber only reads it.
        let ordinal = unsafe { pg_sys::SPI_fnumber(self.desc, name.as_ptr()) };
        if ordinal <= 0 {
            return Err(failed());
        }
        self.get(ordinal as usize)
    }

    /// Column `name` of a NOT NULL column: a NULL there is an error, never a default.
    pub fn required<T: FromDatum + IntoDatum>(&self, name: &str) -> Result<T> {
        self.get_by_name(name)?.ok_or_else(failed)
    }
}

fn failed() -> OAuthError {
    OAuthError::ServerError("database access failed".into())
}

impl Statement {
    /// Run this read-only statement under `fresh` (not the caller's snapshot), mapping each
    /// row with `row`. The caller's open SPI connection is the proof that SPI is connected.
    pub fn query_fresh<R>(
        &'static self,
        _spi: &SpiClient<'_>,
        fresh: &Fresh,
        args: &[DatumWithOid<'_>],
        mut row: impl FnMut(&Row) -> Result<R>,
    ) -> Result<Vec<R>> {
        let plan = self.fresh_plan()?;
        let (mut values, nulls): (Vec<pg_sys::Datum>, Vec<std::ffi::c_char>) = args
            .iter()
            .map(|a| match a.datum() {
                Some(d) => (d.sans_lifetime(), b' ' as std::ffi::c_char),
                None => (pg_sys::Datum::from(0usize), b'n' as std::ffi::c_char),
            })
            .unzip();
        // SAFETY: a kept plan with exactly these argument types; read_only with an explicit
        // snapshot runs every query of the plan under exactly that snapshot.
        unsafe {
            pg_sys::SPI_tuptable = std::ptr::null_mut();
            let status = pg_sys::SPI_execute_snapshot(
                plan.as_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                fresh.snapshot(),
                std::ptr::null_mut(),
                true,
                false,
                0,
            );
            if status != pg_sys::SPI_OK_SELECT as i32 || pg_sys::SPI_tuptable.is_null() {
                return Err(failed());
            }
            let table = &*pg_sys::SPI_tuptable;
            let mut out = Vec::with_capacity(pg_sys::SPI_processed as usize);
            for i in 0..pg_sys::SPI_processed as usize {
                out.push(row(&Row {
                    tuple: *table.vals.add(i),
                    desc: table.tupdesc,
                })?);
            }
            Ok(out)
        }
    }

    fn fresh_plan(&'static self) -> Result<NonNull<pg_sys::_SPI_plan>> {
        let key = self as *const Statement as usize;
        if let Some(plan) = PLANS.with_borrow(|p| p.get(&key).copied()) {
            return Ok(plan);
        }
        let sql = CString::new(self.sql).map_err(|_| failed())?;
        let mut types: Vec<pg_sys::Oid> = self.args.iter().map(|oid| oid.value()).collect();
        // SAFETY: SPI is connected (see query_fresh); the plan is kept for the backend's life.
        let plan = unsafe {
            let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
            let plan = NonNull::new(plan).ok_or_else(failed)?;
            if pg_sys::SPI_keepplan(plan.as_ptr()) != 0 {
                return Err(failed());
            }
            plan
        };
        PLANS.with_borrow_mut(|p| p.insert(key, plan));
        Ok(plan)
    }
}
