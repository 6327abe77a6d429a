//! Claim helpers for row-level security policies (and PostgREST's pre-request check):
//! they read only the current request's verified claims, so PUBLIC may call them.

use pgrx::prelude::*;
use serde_json::{Map, Value};

use crate::grant::scope;
use crate::pg::backend::request_setting;
use crate::pg::jsonb::Jsonb;

/// The verified claims of the current PostgREST request (`request.jwt.claims`).
pub(super) fn request_claims() -> Map<String, Value> {
    match request_setting(c"request.jwt.claims").map(|raw| serde_json::from_str(&raw)) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    }
}

/// The claims of the current PostgREST request as jsonb (`{}` outside a request).
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn claims() -> Jsonb {
    Jsonb(Value::Object(request_claims()))
}

/// The client_id of the current PostgREST request's token, or NULL.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn client_id() -> Option<String> {
    request_claims()
        .get("client_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The scopes granted to the current PostgREST request's token.
fn request_scopes() -> Vec<String> {
    request_claims()
        .get("scope")
        .and_then(Value::as_str)
        .map(|s| {
            s.split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the current PostgREST request's token was granted `scope`, with wildcard and
/// SMART semantics (`system/Patient.rs` satisfies `system/Patient.read`); for RLS policies.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn has_scope(scope: &str) -> bool {
    scope::satisfies(&request_scopes(), scope)
}

/// Whether the token satisfies any of `scopes`.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn has_any_scope(scopes: Vec<String>) -> bool {
    let granted = request_scopes();
    scopes.iter().any(|s| scope::satisfies(&granted, s))
}

/// Whether the token satisfies all of `scopes`.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn has_all_scopes(scopes: Vec<String>) -> bool {
    let granted = request_scopes();
    scopes.iter().all(|s| scope::satisfies(&granted, s))
}
