//! The SQL API administrators call (granted to `oauth_admin`): clients, signing keys,
//! policy roles; and the one setting `oauth.purge_expired` reads.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::config::gucs;
use crate::crypto::argon2id;
use crate::crypto::secret;
use crate::error::{OAuthError, OrRaise};
use crate::jose::ring;
use crate::pg::cache::Fresh;
use crate::pg::limits;
use crate::pg::redact;
use crate::pg::shmem::proofs;
use crate::store::policy::ActingAs;
use crate::store::{client, policy, session};

/// The argon2id hash of a secret generated for `client_id`, made here rather than by the
/// write trigger: the plaintext never becomes a parameter of a statement (which
/// auto_explain.log_nested_statements would log with its parameters on PostgreSQL 16 and
/// later). It is proven from the start, as a plaintext write would make it.
fn hashed(client_id: &str, secret: &str) -> String {
    let _slot = limits::Slot::acquire(gucs::argon2_slots(), limits::Wait::Unbounded).or_raise();
    let hashed = argon2id::hash(secret).or_raise();
    proofs::remember(client_id, &hashed, secret);
    hashed
}

/// Replace a client's secret with a generated one and return it (once). The previous
/// secret keeps working for `grace`; an UPDATE of `secret` ends that grace at once.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn rotate_client_secret(
    client_id: &str,
    grace: default!(pgrx::datum::Interval, "'1 hour'"),
) -> String {
    let _sensitive = redact::sensitive();
    let secret = secret::generate();
    let hashed = hashed(client_id, &secret);
    let rotated =
        Spi::connect_mut(|spi| client::rotate_secret(spi, client_id, grace, &hashed)).or_raise();
    if !rotated {
        OAuthError::InvalidRequest(format!(
            "no client {} with a secret to rotate (and the grace period must not be negative)",
            crate::error::quoted(client_id)
        ))
        .raise();
    }
    secret
}

/// Register a client with a generated secret and return the secret. This is the only
/// time the secret is visible: only its hash is stored. One argument per column an
/// administrator may write (`client_type` is the column `type`); one left out (NULL) gets the
/// column's default.
#[pg_extern(name = "create_client", volatile)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments)] // one per optional client setting
fn create_client_0_3(
    id: &str,
    scope: default!(Option<Vec<String>>, "NULL"),
    grant_types: default!(Option<Vec<String>>, "NULL"),
    token_format: default!(Option<&str>, "NULL"),
    audience: default!(Option<Vec<String>>, "NULL"),
    access_token_expiration: default!(Option<i32>, "NULL"),
    refresh_token: default!(Option<bool>, "NULL"),
    client_type: default!(Option<&str>, "NULL"),
    jwt_alg: default!(Option<&str>, "NULL"),
    refresh_token_expiration: default!(Option<i32>, "NULL"),
    jwks: default!(Option<pgrx::JsonB>, "NULL"),
    active: default!(Option<bool>, "NULL"),
    introspect_any: default!(Option<bool>, "NULL"),
    dpop_bound_access_tokens: default!(Option<bool>, "NULL"),
) -> String {
    let _sensitive = redact::sensitive();
    let secret = secret::generate();
    let hashed = hashed(id, &secret);
    let given: Vec<(&'static str, Option<DatumWithOid<'_>>)> = vec![
        ("scope", scope.map(Into::into)),
        ("grant_types", grant_types.map(Into::into)),
        ("token_format", token_format.map(Into::into)),
        ("audience", audience.map(Into::into)),
        (
            "access_token_expiration",
            access_token_expiration.map(Into::into),
        ),
        ("refresh_token", refresh_token.map(Into::into)),
        ("type", client_type.map(Into::into)),
        ("jwt_alg", jwt_alg.map(Into::into)),
        (
            "refresh_token_expiration",
            refresh_token_expiration.map(Into::into),
        ),
        ("jwks", jwks.map(Into::into)),
        ("active", active.map(Into::into)),
        ("introspect_any", introspect_any.map(Into::into)),
        (
            "dpop_bound_access_tokens",
            dpop_bound_access_tokens.map(Into::into),
        ),
    ];
    let values = given
        .into_iter()
        .filter_map(|(column, value)| value.map(|v| (column, v)))
        .collect();
    Spi::connect_mut(|spi| client::insert(spi, id, &hashed, values)).or_raise();
    secret
}

/// `oauth.create_client` as schemas before 0.3.0 declare it (13 arguments, this symbol), for
/// a new library before `ALTER EXTENSION pg_oauth UPDATE`; no SQL of its own.
#[pg_extern(sql = false, volatile)]
#[allow(clippy::too_many_arguments)]
fn create_client(
    id: &str,
    scope: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    token_format: Option<&str>,
    audience: Option<Vec<String>>,
    access_token_expiration: Option<i32>,
    refresh_token: Option<bool>,
    client_type: Option<&str>,
    jwt_alg: Option<&str>,
    refresh_token_expiration: Option<i32>,
    jwks: Option<pgrx::JsonB>,
    active: Option<bool>,
    introspect_any: Option<bool>,
) -> String {
    create_client_0_3(
        id,
        scope,
        grant_types,
        token_format,
        audience,
        access_token_expiration,
        refresh_token,
        client_type,
        jwt_alg,
        refresh_token_expiration,
        jwks,
        active,
        introspect_any,
        None,
    )
}

/// Create the active and next keys of `alg` now rather than on first use (so a verifier
/// such as PostgREST can have them before the first token). Idempotent; returns the
/// active kid.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn ensure_signing_keys(alg: default!(Option<&str>, "NULL")) -> String {
    let alg = ring::alg_or_default(alg).or_raise();
    Spi::connect_mut(|spi| ring::ensure(spi, alg)).or_raise()
}

/// Rotate the keys of one algorithm: next becomes active, active is retired (published
/// until every token it signed has expired), and a new next key is generated.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn rotate_signing_key(alg: default!(Option<&str>, "NULL")) -> String {
    let alg = ring::alg_or_default(alg).or_raise();
    Spi::connect_mut(|spi| ring::rotate(spi, alg)).or_raise()
}

/// Why `role_name` may not be a policy role (tokens act as it), or NULL: it does not exist,
/// is privileged (SUPERUSER, CREATEROLE, BYPASSRLS, REPLICATION), or is a member of a
/// privileged role or of a predefined role that reaches the server's files, programs or
/// all data.
#[pg_extern(stable, strict, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn policy_role_problem(role_name: &str) -> Option<String> {
    Spi::connect(|spi| policy::role_problem(spi, &Fresh::take(), role_name, ActingAs::Policy))
        .or_raise()
}

/// Why the console may not act as `role_name` (oauth.console_access), or NULL: as
/// policy_role_problem, except that members of oauth_admin are what it is for.
#[pg_extern(stable, strict, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn console_role_problem(role_name: &str) -> Option<String> {
    Spi::connect(|spi| policy::role_problem(spi, &Fresh::take(), role_name, ActingAs::Console))
        .or_raise()
}

/// For oauth.purge_expired: the shortest retention it accepts (pg_oauth.audit_min_retention,
/// read here because only a loaded library knows the setting is superuser-only).
#[pg_extern(stable, parallel_safe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_min_retention_secs() -> i32 {
    gucs::AUDIT_MIN_RETENTION.get()
}

/// For oauth.purge_expired and the 0.3.0 upgrade: the partition of oauth.session that holds
/// tokens issued at `at` (pg_oauth.session_partition_interval; see store/session.rs).
#[pg_extern(stable, parallel_safe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn session_slot(at: pgrx::datum::TimestampWithTimeZone) -> i16 {
    let micros = crate::pg::backend::unix_micros(at);
    session::slot_at(micros.div_euclid(1000))
}

/// For the triggers on oauth.policy: whether the statement running is a COPY (a restore,
/// which may load policies before their clients).
#[pg_extern(volatile, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn loading_by_copy() -> bool {
    crate::pg::backend::in_copy()
}
