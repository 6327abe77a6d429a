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
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
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

/// A jsonb result made from JSON text we already have (a verified JWT payload, or a
/// serialized response), parsed once by PostgreSQL's jsonb_in.
pub struct JsonbText(pub String);

impl JsonbText {
    pub fn from_value(value: &serde_json::Value) -> Self {
        JsonbText(value.to_string())
    }
}

impl pgrx::datum::IntoDatum for JsonbText {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let cstring = std::ffi::CString::new(self.0).expect("JSON text has no NUL bytes");
        // SAFETY: jsonb_in takes a cstring and returns a jsonb datum (or raises).
        unsafe {
            pgrx::direct_function_call_as_datum(
                pg_sys::jsonb_in,
                &[Some(pg_sys::Datum::from(cstring.as_ptr()))],
            )
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// SAFETY: JsonbText is returned to SQL as jsonb, exactly like pgrx::JsonB.
unsafe impl SqlTranslatable for JsonbText {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(JsonbText);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

// SAFETY: the datum comes from jsonb_in, allocated in the current memory context.
unsafe impl pgrx::callconv::BoxRet for JsonbText {
    unsafe fn box_into<'fcx>(
        self,
        fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
    ) -> pgrx::datum::Datum<'fcx> {
        use pgrx::datum::IntoDatum;
        match self.into_datum() {
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}
