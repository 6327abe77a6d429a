//! `oauth.stats` (a view over `oauth.stats_counters()`) and `oauth.stats_reset()`: pg_oauth's
//! counters in shared memory (pg/shmem/stats.rs), in the pg_stat_* style.

use pgrx::prelude::*;
use serde_json::{Map, Value};

use crate::pg::shmem::stats;

/// Every counter: its database (0: logins, and databases beyond the 16 with counters of
/// their own), family, labels and value.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn stats_counters() -> TableIterator<
    'static,
    (
        name!(database, pg_sys::Oid),
        name!(metric, String),
        name!(labels, pgrx::JsonB),
        name!(value, i64),
        name!(description, &'static str),
    ),
> {
    let rows: Vec<_> = stats::read()
        .into_iter()
        .map(|(database, family, labels, value)| {
            let labels: Map<String, Value> = labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect();
            (
                pg_sys::Oid::from(database),
                family.name.to_owned(),
                pgrx::JsonB(Value::Object(labels)),
                i64::try_from(value).unwrap_or(i64::MAX),
                family.help,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Set this database's counters to zero, as pg_stat_reset() does for PostgreSQL's.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn stats_reset() {
    // SAFETY: this backend's database, set when it connected.
    stats::reset(unsafe { pg_sys::MyDatabaseId }.to_u32());
}
