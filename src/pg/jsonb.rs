//! jsonb results built with PostgreSQL's own builder, without a text round trip.

use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};

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
    // SAFETY: JsonbValue is a plain C struct; all zeroes is a valid (null) value.
    let mut scalar: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    match value {
        // SAFETY: pushes into `state` as jsonb's builder expects (begin, key/value pairs,
        // end); keys are referenced, and outlive the build (the caller's contract).
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
        // SAFETY: as for objects: begin, elements, end.
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
                // SAFETY: int8_numeric takes one non-null int8 datum.
                Some(i) => unsafe {
                    pgrx::direct_function_call_as_datum(
                        pg_sys::int8_numeric,
                        &[Some(pg_sys::Datum::from(i))],
                    )
                },
                // SAFETY: float8_numeric takes one non-null float8 datum.
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
    // SAFETY: a scalar pushed as `token` in the state the caller is building.
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
            // SAFETY: a jsonb datum built for this call, returned as its result.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
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
