//! Writes that must commit even though the request that makes them fails.
//!
//! A refresh token presented twice must revoke its family (RFC 9700 §4.14), and a failed
//! client authentication must be recorded, but the request that detects either fails. So
//! such actions are *deferred* while the request runs (queue.rs) and carried out when it
//! fails (run.rs):
//!
//! - over HTTP, in the request's own transaction after its subtransaction rolled back (the
//!   endpoint answers with the error and commits); what cannot get its lock there at once
//!   goes to a background worker, which retries it;
//! - from SQL, where the caller's transaction is about to roll back, in a background worker
//!   (pg/autonomous.rs) — its own connection and transactions — while the caller waits
//!   (bounded).
//!
//! Either way every action ends in a known outcome: committed, or given up on after its
//! retries with a WARNING a DBA can act on and a count (`oauth.audit_dropped_events()`), and
//! the caller is told only what is true (a reused refresh token's grant "has been revoked"
//! only once that committed).

mod queue;
mod run;

pub use queue::{clear_deferred, defer, Action};
pub use run::{apply_deferred, on_failure, publish_keys};
