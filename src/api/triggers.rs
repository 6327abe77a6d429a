//! Trigger functions: secrets stay write-only (client_before_write), and a change to a
//! cached table invalidates every backend's caches (invalidate_caches).

use pgrx::datum::TryFromDatumError;
use pgrx::prelude::*;

use crate::config::gucs;
use crate::crypto::argon2id;
use crate::error::{OAuthError, OrRaise};
use crate::jose::ring;
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
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, TryFromDatumError> {
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
        wait_if_deactivated(old, &new)?;
    }
    // Rows loaded with COPY (a restore) may carry hashes imported under the looser caps of
    // earlier releases: kept, and rehashed at our cost when their secret first verifies.
    let caps = if backend::in_copy() {
        argon2id::Caps::Restored
    } else {
        argon2id::Caps::Import
    };
    hash_new_secret(old.as_ref(), &mut new, caps)?;
    hash_previous_secret(&mut new, caps)?;
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

/// Deactivation: its AFTER trigger revokes the client's tokens, those being issued now
/// included once they commit (store/client.rs).
fn wait_if_deactivated<A: WhoAllocated, B: WhoAllocated>(
    old: &PgHeapTuple<'_, A>,
    new: &PgHeapTuple<'_, B>,
) -> Result<(), TryFromDatumError> {
    let was: Option<bool> = old.get_by_name("active")?;
    let is: Option<bool> = new.get_by_name("active")?;
    if was == Some(true) && is != Some(true) {
        if let Some(id) = old.get_by_name::<String>("id")? {
            client::lock_for_deactivation(&id);
        }
    }
    Ok(())
}

/// A secret written in plaintext is hashed (and proven); an argon2 PHC string is kept, for
/// imports. Any change of the secret but a rotation's ends a grace period at once.
fn hash_new_secret<A: WhoAllocated>(
    old: Option<&PgHeapTuple<'_, A>>,
    new: &mut PgHeapTuple<'_, AllocatedByRust>,
    caps: argon2id::Caps,
) -> Result<(), TryFromDatumError> {
    let secret: Option<String> = new.get_by_name("secret")?;
    let old_secret: Option<String> = match old {
        Some(old) => old.get_by_name("secret")?,
        None => None,
    };
    let Some(plain) = secret.filter(|s| Some(s) != old_secret.as_ref()) else {
        return Ok(());
    };
    // Whatever becomes of this statement (a check constraint may still fail it), its text,
    // which may hold the plaintext, stays out of the log.
    redact::statement_carries_secrets();
    match argon2id::classify_with(&plain, caps) {
        argon2id::SecretValue::Plaintext => {
            let _slot =
                limits::Slot::acquire(gucs::argon2_slots(), limits::Wait::Unbounded).or_raise();
            let hashed = argon2id::hash(&plain).or_raise();
            // Proven from the start: the client is never locked out by guessers, not even
            // before its first request (a rolled-back write leaves a proof for a hash that
            // never exists, which matches nothing).
            if let Some(id) = new.get_by_name::<String>("id")? {
                proofs::remember(&id, &hashed, &plain);
            }
            new.set_by_name("secret", hashed)?;
        }
        argon2id::SecretValue::Argon2Hash => {}
        argon2id::SecretValue::BadHash(why) => OAuthError::InvalidRequest(format!(
            "the secret looks like an argon2 hash to import, but {why}"
        ))
        .raise(),
    }
    if let Some(old) = old {
        // rotate_client_secret sets previous_secret itself; any other change of the secret
        // ends a grace period at once (pg_oauth's own rehash of a costly hash keeps it: same
        // secret).
        let previous: Option<String> = new.get_by_name("previous_secret")?;
        let old_previous: Option<String> = old.get_by_name("previous_secret")?;
        if previous == old_previous && !argon2id::is_rehash() {
            new.set_by_name("previous_secret", None::<String>)?;
            new.set_by_name("previous_secret_expires_at", None::<TimestampWithTimeZone>)?;
        }
    }
    Ok(())
}

/// A previous secret (a rotation's, or an import's) is stored hashed too.
fn hash_previous_secret(
    new: &mut PgHeapTuple<'_, AllocatedByRust>,
    caps: argon2id::Caps,
) -> Result<(), TryFromDatumError> {
    let previous: Option<String> = new.get_by_name("previous_secret")?;
    if let Some(previous) = previous {
        match argon2id::classify_with(&previous, caps) {
            argon2id::SecretValue::Plaintext => {
                new.set_by_name("previous_secret", argon2id::hash(&previous).or_raise())?;
            }
            argon2id::SecretValue::Argon2Hash => {}
            argon2id::SecretValue::BadHash(why) => OAuthError::InvalidRequest(format!(
                "the previous secret looks like an argon2 hash, but {why}"
            ))
            .raise(),
        }
    }
    Ok(())
}

/// AFTER INSERT OR UPDATE OF token_format, jwt_alg on oauth.client, for JWT clients: keys are
/// published before they sign, so writing a client that may get JWTs makes its algorithm's
/// active and next keys exist; they reach verifiers (PostgREST reloads through NOTIFY at
/// commit) before its first token. Rows loaded with COPY make none: pg_restore and a dump
/// replayed with psql bring the keys they had, which fresh keys would collide with (and a
/// restore must give back exactly what was dumped). Keys still missing at the first token are
/// made and committed before it is signed (flow/issue.rs). SECURITY DEFINER (finalize.sql):
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
        let alg = ring::alg_for(alg.as_deref());
        Spi::connect_mut(|spi| ring::ensure(spi, alg)).or_raise();
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
