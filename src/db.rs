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

/// Microseconds since the Unix epoch, from the system clock.
pub fn now_micros() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("system clock before 1970");
    now.as_micros() as i64
}

const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

pub fn timestamptz(unix_micros: i64) -> pgrx::datum::TimestampWithTimeZone {
    pgrx::datum::TimestampWithTimeZone::try_from(unix_micros - PG_EPOCH_OFFSET_MICROS)
        .expect("timestamp in range")
}

pub fn unix_seconds(ts: pgrx::datum::TimestampWithTimeZone) -> i64 {
    let pg: pg_sys::TimestampTz = ts.into();
    (pg + PG_EPOCH_OFFSET_MICROS).div_euclid(1_000_000)
}
