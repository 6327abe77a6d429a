//! PostgreSQL internals, and nearly all of pg_oauth's `unsafe`: SPI with kept plans, jsonb
//! building, fresh snapshots, cache invalidation, the background worker that commits when
//! the caller rolls back, shared memory, the cluster-wide argon2 bound and the log hook.
//! Knows nothing of OAuth.

pub mod autonomous;
pub mod backend;
pub mod cache;
pub mod db;
pub mod fresh;
pub mod jsonb;
pub mod limits;
pub mod locks;
pub mod redact;
pub mod settings;
pub mod shmem;
pub mod subxact;
