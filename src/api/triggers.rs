//! Trigger functions: secrets stay write-only (client_before_write), and a change to a
//! cached table invalidates every backend's caches (invalidate_caches).

use pgrx::prelude::*;

use crate::crypto::secret;
use crate::error::{OAuthError, OrRaise};
use crate::jose::keys;
use crate::pg::backend;
use crate::pg::limits;
use crate::pg::redact;
use crate::pg::shmem::proofs;
use crate::store::client;

/// BEFORE INSERT OR UPDATE OR DELETE on oauth.client: secrets are write-only. Plaintext is
/// replaced by its argon2id hash before the row reaches the table (and so the WAL); an argon2
/// PHC string is kept as is, for imports. A plain UPDATE of the secret ends a rotation grace.
/// Deactivating or deleting a client first waits for the tokens being issued to it.
#[pg_trigger]
fn client_before_write<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, pgrx::datum::TryFromDatumError> {
    let _sensitive = redact::sensitive();
    let old = trigger.old();
    let Some(new) = trigger.new() else {
        // DELETE: wait for the tokens being issued to the client to commit, so that the
        // delete takes them too.
        let old = old.expect("a DELETE trigger has the old row");
        if let Some(id) = old.get_by_name::<String>("id")? {
            client::lock_for_deactivation(&id);
        }
        return Ok(Some(old.into_owned()));
    };
    let mut new = new.into_owned();
    if let Some(old) = &old {
        let was: Option<bool> = old.get_by_name("active")?;
        let is: Option<bool> = new.get_by_name("active")?;
        if was == Some(true) && is != Some(true) {
            // Deactivation: its AFTER trigger revokes the client's tokens, those being
            // issued now included once they commit (store/client.rs).
            if let Some(id) = old.get_by_name::<String>("id")? {
                client::lock_for_deactivation(&id);
            }
        }
    }

    // Rows loaded with COPY (a restore) may carry hashes imported under the looser caps of
    // earlier releases: kept, and rehashed at our cost when their secret first verifies.
    let caps = if backend::in_copy() {
        secret::Caps::Restored
    } else {
        secret::Caps::Import
    };
    let secret: Option<String> = new.get_by_name("secret")?;
    let old_secret: Option<String> = match &old {
        Some(old) => old.get_by_name("secret")?,
        None => None,
    };
    if let Some(plain) = secret.filter(|s| Some(s) != old_secret.as_ref()) {
        // Whatever becomes of this statement (a check constraint may still fail it), its
        // text, which may hold the plaintext, stays out of the log.
        redact::statement_carries_secrets();
        match secret::classify_with(&plain, caps) {
            secret::SecretValue::Plaintext => {
                let _slot = limits::Slot::acquire(
                    crate::config::gucs::argon2_slots(),
                    limits::Wait::Unbounded,
                )
                .or_raise();
                let hashed = secret::hash(&plain).or_raise();
                // Proven from the start: the client is never locked out by guessers, not
                // even before its first request (a rolled-back write leaves a proof for a
                // hash that never exists, which matches nothing).
                if let Some(id) = new.get_by_name::<String>("id")? {
                    proofs::remember(&id, &hashed, &plain);
                }
                new.set_by_name("secret", hashed)?;
            }
            secret::SecretValue::Argon2Hash => {}
            secret::SecretValue::BadHash(why) => OAuthError::InvalidRequest(format!(
                "the secret looks like an argon2 hash to import, but {why}"
            ))
            .raise(),
        }
        if let Some(old) = &old {
            // rotate_client_secret sets previous_secret itself; any other change of the
            // secret ends a grace period at once.
            let previous: Option<String> = new.get_by_name("previous_secret")?;
            let old_previous: Option<String> = old.get_by_name("previous_secret")?;
            // (pg_oauth's own rehash of a costly hash keeps the grace: same secret.)
            if previous == old_previous && !secret::is_rehash() {
                new.set_by_name("previous_secret", None::<String>)?;
                new.set_by_name("previous_secret_expires_at", None::<TimestampWithTimeZone>)?;
            }
        }
    }
    let previous: Option<String> = new.get_by_name("previous_secret")?;
    if let Some(previous) = previous {
        match secret::classify_with(&previous, caps) {
            secret::SecretValue::Plaintext => {
                new.set_by_name("previous_secret", secret::hash(&previous).or_raise())?;
            }
            secret::SecretValue::Argon2Hash => {}
            secret::SecretValue::BadHash(why) => OAuthError::InvalidRequest(format!(
                "the previous secret looks like an argon2 hash, but {why}"
            ))
            .raise(),
        }
    }

    if let Some(old) = &old {
        let old_id: Option<String> = old.get_by_name("id")?;
        let new_id: Option<String> = new.get_by_name("id")?;
        if old_id != new_id {
            OAuthError::InvalidRequest(
                "a client id cannot be changed; create a new client instead".into(),
            )
            .raise();
        }
        new.set_by_name("updated_at", backend::timestamptz(backend::now_micros()))?;
    }
    Ok(Some(new))
}

/// AFTER INSERT OR UPDATE OF token_format, jwt_alg on oauth.client, for JWT clients: keys are
/// published before they sign, so writing a client that may get JWTs makes its algorithm's
/// active and next keys exist; they reach verifiers (PostgREST reloads through NOTIFY at
/// commit) before its first token. Rows loaded with COPY make none: pg_restore and a dump
/// replayed with psql bring the keys they had, which fresh keys would collide with (and a
/// restore must give back exactly what was dumped). Keys still missing at the first token are
/// made and committed before it is signed (flow/token.rs). SECURITY DEFINER (finalize.sql):
/// oauth_admin writes clients but not keys.
#[pg_trigger]
fn client_ensure_signing_keys<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, pgrx::datum::TryFromDatumError> {
    if !backend::in_copy() {
        let new = trigger
            .new()
            .expect("client_ensure_signing_keys is a row-level INSERT/UPDATE trigger");
        let alg: Option<String> = new.get_by_name("jwt_alg")?;
        let alg = keys::alg_for(alg.as_deref());
        Spi::connect_mut(|spi| keys::ensure(spi, alg)).or_raise();
    }
    Ok(None::<PgHeapTuple<'a, AllocatedByPostgres>>)
}

/// AFTER ... FOR EACH STATEMENT on the cached tables: invalidate every backend's caches at
/// commit; for oauth.signing_key also tell PostgREST (channel `pgrst`) to reload its config,
/// i.e. re-read the keys through `oauth.postgrest_pre_config()`.
#[pg_trigger]
fn invalidate_caches<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, pgrx::datum::TryFromDatumError> {
    let relid = trigger.relid().expect("a table trigger");
    // SAFETY: queues an invalidation message for this relation; delivered at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    if trigger.table_name().is_ok_and(|t| t == "signing_key") {
        Spi::run("SELECT pg_catalog.pg_notify('pgrst', 'reload config')").expect("NOTIFY pgrst");
    }
    Ok(None::<PgHeapTuple<'a, AllocatedByPostgres>>)
}
