//! Whether a DPoP proof (RFC 9449) fits the request it came with: its method and URL, its
//! age, the access token it was presented with (`ath`), and whether it was used before
//! (§4.3, §7.1). The proof's own form and signature are jose/dpop.rs; the memory of proofs
//! already used, pg/shmem/dpop.rs. Checking and spending are separate steps: a proof is
//! spent only once the client or token it came with has checked out, so that nobody
//! without credentials can fill the memory of used proofs.

use crate::config::gucs;
use crate::crypto::random::b64url;
use crate::error::{OAuthError, Result};
use crate::jose::dpop::{self, invalid};
use crate::pg::shmem::dpop::{spend as spend_once, Spent};
use crate::pg::shmem::nonces;
use crate::pg::shmem::stats;

/// A proof as a request presents it.
pub struct Presented<'a> {
    pub proof: &'a str,
    /// The request's method (`POST`, `GET`, ...).
    pub method: &'a str,
    /// The URLs the request may have been sent to (the token endpoint as each server
    /// publishes it; the resource's URL as its server sees it).
    pub urls: &'a [String],
}

/// A proof that fits its request, not yet spent.
#[derive(Debug)]
pub struct Checked {
    /// The thumbprint of the key that signed it.
    pub jkt: String,
    jti: String,
    /// End of its acceptance window (Unix microseconds).
    until_us: i64,
}

/// Check `presented` against its request, at `now_us`; `token`: the access token it was
/// presented with (resource requests), whose hash it must carry as `ath`.
pub fn check(presented: &Presented<'_>, token: Option<&str>, now_us: i64) -> Result<Checked> {
    let proof = dpop::read(presented.proof)?;
    if proof.htm != presented.method {
        return Err(invalid(format!(
            "the DPoP proof is for method {}, not {}",
            crate::error::quoted(&proof.htm),
            presented.method
        )));
    }
    let htu = dpop::normalized_url(&proof.htu);
    let expected = presented
        .urls
        .iter()
        .filter_map(|u| dpop::normalized_url(u));
    if htu.is_none() || !expected.into_iter().any(|u| Some(u) == htu) {
        return Err(invalid(format!(
            "the DPoP proof is for {}, not this URL{}",
            crate::error::quoted(&proof.htu),
            presented
                .urls
                .first()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default()
        )));
    }
    let leeway = i64::from(gucs::LEEWAY.get());
    let max_age = i64::from(gucs::DPOP_PROOF_MAX_AGE.get());
    let now = now_us.div_euclid(1_000_000);
    if proof.iat > now + leeway {
        return Err(invalid("the DPoP proof's iat is in the future"));
    }
    if proof.iat < now - max_age - leeway {
        return Err(invalid(format!(
            "the DPoP proof is older than {max_age} seconds (pg_oauth.dpop_proof_max_age)"
        )));
    }
    if gucs::DPOP_NONCE.get() && !proof.nonce.as_deref().is_some_and(|n| nonce_ok(n, now)) {
        return Err(OAuthError::UseDpopNonce {
            nonce: current_nonce(now_us).ok_or_else(no_shared_memory)?,
        });
    }
    if let Some(token) = token {
        if proof.ath.as_deref() != Some(dpop::ath_of(token).as_str()) {
            return Err(invalid(
                "the DPoP proof's ath is not the hash of the access token it came with",
            ));
        }
    }
    let until = proof.iat.saturating_add(max_age + leeway + 1);
    Ok(Checked {
        jkt: proof.jkt,
        jti: proof.jti,
        until_us: until.saturating_mul(1_000_000),
    })
}

/// Accept `checked` once: a second use, by any backend of the cluster, is refused.
pub fn spend(checked: &Checked, now_us: i64) -> Result<()> {
    match spend_once(&checked.jkt, &checked.jti, checked.until_us, now_us) {
        Spent::Fresh => {
            stats::count("dpop_proofs", &["accepted"]);
            Ok(())
        }
        Spent::Replayed => {
            stats::count("dpop_proofs", &["refused"]);
            Err(invalid("the DPoP proof was already used (jti replay)"))
        }
        Spent::Full { next_free_us } => Err(OAuthError::TemporarilyUnavailable {
            retry_after_secs: (next_free_us - now_us).div_euclid(1_000_000).max(0) + 1,
        }),
        Spent::Unavailable => Err(no_shared_memory()),
    }
}

fn no_shared_memory() -> OAuthError {
    OAuthError::ServerError(
        "DPoP proofs cannot be accepted here: no dynamic shared memory segment was left \
         for pg_oauth (raise max_connections or restart)"
            .into(),
    )
}

/// How long a nonce's window lasts: a nonce is accepted in its window and the next.
const NONCE_WINDOW_SECS: i64 = 300;

/// The nonce to hand out now (RFC 9449 §8), if nonces can be made here.
pub fn current_nonce(now_us: i64) -> Option<String> {
    nonces::nonce(now_us.div_euclid(1_000_000).div_euclid(NONCE_WINDOW_SECS)).map(|n| b64url(&n))
}

/// Whether `nonce` is this server's nonce of the current or the previous window.
fn nonce_ok(nonce: &str, now: i64) -> bool {
    let window = now.div_euclid(NONCE_WINDOW_SECS);
    [window, window - 1]
        .into_iter()
        .filter_map(nonces::nonce)
        .any(|n| b64url(&n) == nonce)
}
