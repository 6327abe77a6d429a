//! PostgreSQL internals, and nearly all of pg_oauth's `unsafe`: SPI with kept plans, jsonb
//! building, fresh snapshots, direct index probes, subtransactions, cache invalidation,
//! locks, the background worker that commits when the caller rolls back, shared memory, the
//! cluster-wide argon2 bound, settings kept current after a reload, the log hook, and
//! PostgreSQL 18's OAuth validator interface (changes held until commit: pending.rs).
//! Knows none of OAuth's rules: only which of pg_oauth's relations the caches follow and
//! the probe reads (cache.rs, by name), as the catalog code it wraps requires.

pub mod autonomous;
pub mod backend;
pub mod cache;
pub mod db;
pub mod fresh;
pub mod index;
pub mod jsonb;
pub mod limits;
pub mod locks;
pub mod pending;
pub mod redact;
pub mod role;
pub mod settings;
pub mod shmem;
pub mod subxact;
pub mod validator;
#[cfg(feature = "pg18")]
pub mod validator_abi;
