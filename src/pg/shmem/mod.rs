//! State shared by every backend of the cluster, without shared_preload_libraries: one
//! dynamic shared memory segment, created by the first backend that needs it, pinned until
//! the server stops, and found by the others through `pg_dynshmem/pg_oauth_shared` (its
//! handle and a random nonce; PostgreSQL's own directory for DSM state, which base backups
//! skip). A restart forgets it all. Its tables:
//!
//! - proofs.rs: proofs of verified secrets (8192, 8-way buckets, least recently used
//!   evicted), so that a client that knows its secret is not locked out by guessers;
//! - sources.rs: failed authentications per source and window (4096, 4-way), so that
//!   rotating client ids does not escape throttling;
//! - marks.rs: a small set of ids (refresh grants whose revocation is owed);
//! - dpop.rs: the DPoP proofs accepted and still young enough to be replayed (524,288,
//!   64-way buckets);
//! - login.rs: what PostgreSQL 18's OAuth login checks before a database is open (issuers
//!   and their keys, clients, tokens that may log in);
//!
//! pg_oauth's counters, `oauth.stats` (stats.rs: atomics, outside the lock); the key DPoP
//! nonces are made with (nonces.rs), and a count of pg_oauth's running
//! background workers, to bound them (workers.rs).
//!
//! About 9.5 MB. Every access runs under one spinlock, for a few dozen instructions over
//! plain memory (a login's copy of its issuer's keys, at most 32 KB; a rebuild's sweep of
//! the login tables, tens of microseconds): nothing under it can raise an error or sleep.

mod segment;

pub mod dpop;
pub mod login;
pub mod marks;
pub mod nonces;
pub mod proofs;
pub mod sources;
pub mod stats;
pub mod workers;
