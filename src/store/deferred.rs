//! Writes that must commit even though the request that makes them fails.
//!
//! A refresh token presented twice must revoke its family (RFC 9700 §4.14), and a failed
//! client authentication must be recorded, but the request that detects either fails. So
//! such actions are *deferred* while the request runs (this queue) and carried out when it
//! fails (flow/deferred.rs):
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

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::store::audit::{Failure, Throttled};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Action {
    /// Revoke a refresh token family and every access token issued from it.
    RevokeFamily { family: [u8; 16], reason: String },
    /// Record a failed client authentication (and count it toward a lockout).
    RecordFailure(Failure),
    /// Record how many requests a throttled source has been refused in its window.
    RecordThrottled(Throttled),
    /// Make an algorithm's first signing keys, committed before anything signs with them.
    PublishKeys { alg: String },
}

thread_local! {
    static DEFERRED: RefCell<Vec<Action>> = const { RefCell::new(Vec::new()) };
}

/// Carry out `action` if the current request fails.
pub fn defer(action: Action) {
    DEFERRED.with_borrow_mut(|d| d.push(action));
}

/// Forget actions of an earlier request that ended without carrying them out.
pub fn clear_deferred() {
    DEFERRED.with_borrow_mut(Vec::clear);
}

/// The actions deferred so far, taken out of the queue.
pub fn take() -> Vec<Action> {
    DEFERRED.take()
}

impl Action {
    /// What it is, for a DBA reading a warning or the log (ids, sources and reasons; never
    /// a secret).
    pub fn describe(&self) -> String {
        match self {
            Action::RevokeFamily { family, reason } => format!(
                "revocation of refresh grant {} ({reason})",
                uuid::Uuid::from_bytes(*family).hyphenated()
            ),
            Action::RecordFailure(f) => format!(
                "record of a failed authentication of client \"{}\" from {} ({})",
                f.client_id, f.source, f.reason
            ),
            Action::RecordThrottled(t) => format!(
                "record of {} refusals of throttled source {}",
                t.refused, t.source
            ),
            Action::PublishKeys { alg } => format!("making of the first {alg} signing keys"),
        }
    }

    /// What a DBA can do about it when it could not be carried out.
    pub fn remedy(&self) -> String {
        match self {
            Action::RevokeFamily { family, .. } => format!(
                "revoke it with UPDATE oauth.refresh_family SET revoked_at = now() WHERE id = '{}' (until then pg_oauth refuses the grant's tokens, until the server restarts)",
                uuid::Uuid::from_bytes(*family).hyphenated()
            ),
            Action::PublishKeys { alg } => {
                format!("run SELECT oauth.ensure_signing_keys('{alg}')")
            }
            Action::RecordFailure(_) | Action::RecordThrottled(_) => {
                "the audit trail misses this row".into()
            }
        }
    }

    /// The same action, not counting toward a lockout (a retry that must not wait on the
    /// lockout row again).
    pub fn uncounted(&self) -> Action {
        match self {
            Action::RecordFailure(f) if f.guesses > 0 => Action::RecordFailure(Failure {
                guesses: 0,
                reason: format!(
                    "{}; not counted toward the lockout (its row was busy)",
                    f.reason
                ),
                ..f.clone()
            }),
            other => other.clone(),
        }
    }
}
