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

/// Run `f` with `search_path = pg_catalog, pg_temp`, as a function's `SET search_path`
/// would, for functions that skip the SET clause on their fast path but may fall back to
/// SQL. An ERROR inside unwinds through the transaction, which restores the setting.
pub fn with_safe_search_path<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: the same calls fmgr makes for a function's SET clause.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
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

/// Writes need the primary: on a hot standby say so plainly (rather than failing later
/// with "cannot execute INSERT in a read-only transaction").
pub fn require_primary(what: &str) -> crate::error::Result<()> {
    // SAFETY: reads a flag in shared memory.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Err(crate::error::OAuthError::ServerError(format!(
            "this server is a read-only standby; {what} on the primary (verification and introspection work here)"
        )));
    }
    Ok(())
}

/// The session user's name (who logged in, whatever role a function runs as).
pub fn session_user() -> String {
    // SAFETY: the session user exists for the whole session; the name is palloc'd.
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetSessionUserId(), true);
        if name.is_null() {
            return "?".into();
        }
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
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

/// A jsonb result, built straight from a parsed value with PostgreSQL's own jsonb builder
/// (`pushJsonbValue`): no text round trip through jsonb_in's lexer. Keys are pushed in
/// jsonb's storage order, so its final key sort is one linear pass.
pub struct Jsonb(pub serde_json::Value);

impl Jsonb {
    pub fn object(map: serde_json::Map<String, serde_json::Value>) -> Self {
        Jsonb(serde_json::Value::Object(map))
    }
}

/// jsonb's key order: shorter keys first, then bytewise.
fn jsonb_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Push `value` into a jsonb parse state; returns what the last push returned (for a
/// top-level object: the finished value).
///
/// # Safety
/// The strings are referenced, not copied: `value` must outlive `JsonbValueToJsonb`.
unsafe fn push_jsonb(
    state: &mut *mut pg_sys::JsonbParseState,
    token: pg_sys::JsonbIteratorToken::Type,
    value: &serde_json::Value,
) -> *mut pg_sys::JsonbValue {
    use pg_sys::jbvType::*;
    use pg_sys::JsonbIteratorToken::*;
    use serde_json::Value;
    let mut scalar: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    match value {
        Value::Object(map) => unsafe {
            pg_sys::pushJsonbValue(state, WJB_BEGIN_OBJECT, std::ptr::null_mut());
            let mut pairs: Vec<_> = map.iter().collect();
            pairs.sort_by(|(a, _), (b, _)| jsonb_key_order(a, b));
            for (key, v) in pairs {
                let mut k: pg_sys::JsonbValue = std::mem::zeroed();
                k.type_ = jbvString;
                k.val.string.len = key.len() as i32;
                k.val.string.val = key.as_ptr() as *mut std::ffi::c_char;
                pg_sys::pushJsonbValue(state, WJB_KEY, &mut k);
                push_jsonb(state, WJB_VALUE, v);
            }
            return pg_sys::pushJsonbValue(state, WJB_END_OBJECT, std::ptr::null_mut());
        },
        Value::Array(items) => unsafe {
            pg_sys::pushJsonbValue(state, WJB_BEGIN_ARRAY, std::ptr::null_mut());
            for v in items {
                push_jsonb(state, WJB_ELEM, v);
            }
            return pg_sys::pushJsonbValue(state, WJB_END_ARRAY, std::ptr::null_mut());
        },
        Value::Null => scalar.type_ = jbvNull,
        Value::Bool(b) => {
            scalar.type_ = jbvBool;
            scalar.val.boolean = *b;
        }
        Value::String(text) => {
            scalar.type_ = jbvString;
            scalar.val.string.len = text.len() as i32;
            scalar.val.string.val = text.as_ptr() as *mut std::ffi::c_char;
        }
        Value::Number(n) => {
            scalar.type_ = jbvNumeric;
            let numeric = match n.as_i64() {
                Some(i) => unsafe {
                    pgrx::direct_function_call_as_datum(
                        pg_sys::int8_numeric,
                        &[Some(pg_sys::Datum::from(i))],
                    )
                },
                None => unsafe {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    pgrx::direct_function_call_as_datum(
                        pg_sys::float8_numeric,
                        &[Some(pg_sys::Datum::from(f.to_bits() as i64))],
                    )
                },
            };
            scalar.val.numeric = numeric.expect("numeric conversion").cast_mut_ptr();
        }
    }
    unsafe { pg_sys::pushJsonbValue(state, token, &mut scalar) }
}

impl pgrx::datum::IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        assert!(self.0.is_object(), "pg_oauth returns jsonb objects");
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        // SAFETY: self.0 lives until JsonbValueToJsonb has copied everything into the datum.
        unsafe {
            let value = push_jsonb(&mut state, pg_sys::JsonbIteratorToken::WJB_VALUE, &self.0);
            Some(pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(value)))
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// SAFETY: Jsonb is returned to SQL as jsonb, exactly like pgrx::JsonB.
unsafe impl SqlTranslatable for Jsonb {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(Jsonb);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

// SAFETY: the datum is a fresh jsonb in the current memory context.
unsafe impl pgrx::callconv::BoxRet for Jsonb {
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

/// Sleep on the latch for up to `ms` milliseconds (no CPU; interrupts and postmaster death
/// end it): a latch set by someone else (a worker we wait for, sinval catch-up) wakes it early.
pub fn sleep_ms(ms: i64) {
    // SAFETY: a latch wait with a timeout, as PostgreSQL's own waits do.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}

/// Sleep on the latch for the whole of `ms` milliseconds, however often the latch is set.
pub fn pause_ms(ms: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms.max(0) as u64);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        sleep_ms(left.as_millis().max(1) as i64);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn jsonb_key_order_is_length_then_bytes() {
        let mut keys = vec!["client_id", "sub", "aud", "scope", "b", "zz"];
        keys.sort_by(|a, b| jsonb_key_order(a, b));
        assert_eq!(keys, ["b", "zz", "aud", "sub", "scope", "client_id"]);
    }
}
