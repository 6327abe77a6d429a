//! OAuth clients: loading a client with its policy (cached per backend), writing one with a
//! generated secret (`oauth.create_client`, `oauth.rotate_client_secret`), replacing a
//! costly hash, and the lock that orders issuance against deactivation. Authenticating one
//! is authn/credentials.rs; the trigger that keeps secrets write-only is api/triggers.rs.

use pgrx::pg_sys::BuiltinOid::TEXTOID;
use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::crypto::certificate::NameKind;
use crate::error::{OAuthError, Result};
use crate::pg::backend;
use crate::pg::cache::{self, Cache, Fresh, Source};
use crate::pg::db::Statement;
use crate::pg::locks;
use crate::store::policy::{self, ActingAs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    Opaque,
    Jwt,
}

impl TokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFormat::Opaque => "opaque",
            TokenFormat::Jwt => "jwt",
        }
    }
}

/// A client row joined with its policy, as the token endpoint needs it.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: Option<String>,
    /// The previous secret and, in Unix microseconds, the end of its grace period.
    previous_secret: Option<(String, i64)>,
    pub grant_types: Vec<String>,
    pub scope: Vec<String>,
    pub audience: Vec<String>,
    /// `type = 'smart-app'`: SMART on FHIR scope rules apply.
    pub smart: bool,
    pub token_format: TokenFormat,
    pub jwt_alg: Option<String>,
    pub access_token_expiration: i32,
    pub refresh_token: bool,
    pub refresh_token_expiration: i32,
    pub active: bool,
    /// The client's registered public keys (private_key_jwt).
    pub jwks: Option<serde_json::Value>,
    /// May introspect tokens issued to other clients (a resource server).
    pub introspect_any: bool,
    /// Must present a DPoP proof at the token endpoint (RFC 9449 §5.2).
    pub dpop_bound_access_tokens: bool,
    /// Its access tokens are bound to its TLS client certificate (RFC 8705 §3).
    pub tls_client_certificate_bound_access_tokens: bool,
    /// `tls_client_auth` (RFC 8705 §2.1): the name its CA-issued certificate must carry.
    pub tls_client_auth: Option<(NameKind, String)>,
    /// The policy's role, if any, and why it may not be used (see policy.rs).
    pub role: Option<String>,
    pub role_problem: Option<String>,
}

macro_rules! load_client {
    ($introspect_any:literal, $dpop:literal, $mtls:literal) => {
        concat!(
            "SELECT c.secret, c.previous_secret, c.previous_secret_expires_at,
                    c.grant_types, c.scope, c.audience, c.type = 'smart-app' AS smart,
                    c.token_format, c.jwt_alg, c.access_token_expiration, c.refresh_token,
                    c.refresh_token_expiration, c.active, c.jwks, p.role::text AS role, ",
            $introspect_any,
            " AS introspect_any, ",
            $dpop,
            " AS dpop_bound_access_tokens, ",
            $mtls,
            "
               FROM oauth.client c
               LEFT JOIN oauth.policy p ON p.client_id = c.id
              WHERE c.id = $1"
        )
    };
}

/// The `tls_client_auth` name a client registered: at most one of the five (a CHECK says).
static LOAD_CLIENT: Statement = Statement::new(
    load_client!(
        "c.introspect_any",
        "c.dpop_bound_access_tokens",
        "c.tls_client_certificate_bound_access_tokens,
        CASE WHEN c.tls_client_auth_subject_dn IS NOT NULL THEN 'dn'
             WHEN c.tls_client_auth_san_dns IS NOT NULL THEN 'dns'
             WHEN c.tls_client_auth_san_uri IS NOT NULL THEN 'uri'
             WHEN c.tls_client_auth_san_ip IS NOT NULL THEN 'ip'
             WHEN c.tls_client_auth_san_email IS NOT NULL THEN 'email' END AS tls_name_kind,
        COALESCE(c.tls_client_auth_subject_dn, c.tls_client_auth_san_dns,
                 c.tls_client_auth_san_uri, c.tls_client_auth_san_ip,
                 c.tls_client_auth_san_email) AS tls_name"
    ),
    &[TEXTOID],
);
/// The same against older schemas, which a newly installed library meets until
/// `ALTER EXTENSION pg_oauth UPDATE`: 0.2.0 has no `dpop_bound_access_tokens`, 0.1.0 no
/// `introspect_any` either.
static LOAD_CLIENT_0_2: Statement = Statement::new(
    load_client!("c.introspect_any", "false", "false AS tls_client_certificate_bound_access_tokens, NULL::text AS tls_name_kind, NULL::text AS tls_name"),
    &[TEXTOID],
);
static LOAD_CLIENT_0_1: Statement =
    Statement::new(load_client!("false", "false", "false AS tls_client_certificate_bound_access_tokens, NULL::text AS tls_name_kind, NULL::text AS tls_name"), &[TEXTOID]);

/// Bound on cached clients per backend.
const CACHE_CAPACITY: usize = 10_000;

thread_local! {
    /// Clients as loaded (see cache.rs: dropped on any change to oauth.client, oauth.policy
    /// or a role). Unknown ids are not kept.
    static CLIENTS: Cache<String, Option<Rc<Client>>> =
        Cache::new(Source::Clients, CACHE_CAPACITY, Option::is_some);
}

/// Load a client by id; `None` when there is no such client.
pub fn load(spi: &SpiClient<'_>, client_id: &str) -> Result<Option<Rc<Client>>> {
    CLIENTS.with(|cache| {
        cache.get(client_id, |fresh| {
            Ok(load_from_table(spi, fresh, client_id)?.map(Rc::new))
        })
    })
}

/// Load a client by id from the table, under a fresh snapshot, whatever this backend has
/// cached (the same cost whether it exists or not).
pub fn load_uncached(spi: &SpiClient<'_>, client_id: &str) -> Result<Option<Rc<Client>>> {
    UNCACHED_LOADS.set(UNCACHED_LOADS.get() + 1);
    Ok(load_from_table(spi, &Fresh::take(), client_id)?.map(Rc::new))
}

thread_local! {
    /// Calls of `load_uncached` in this backend (for the tests).
    static UNCACHED_LOADS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Calls of `load_uncached` in this backend.
#[cfg(any(test, feature = "pg_test"))]
pub fn uncached_loads() -> u64 {
    UNCACHED_LOADS.get()
}

static REHASH: Statement = Statement::new(
    "UPDATE oauth.client
        SET secret = CASE WHEN secret = $2 THEN $3 ELSE secret END,
            previous_secret = CASE WHEN previous_secret = $2 THEN $3 ELSE previous_secret END
      WHERE id = $1 AND $2 IN (secret, previous_secret)
      RETURNING 1",
    &[TEXTOID, TEXTOID, TEXTOID],
);

/// Replace the stored hash `old` of `client_id` (current or previous secret) by `new`, a hash
/// of the same secret: a rotation's grace period goes on. Returns whether it was still there.
pub fn rehash(spi: &mut SpiClient<'_>, client_id: &str, old: &str, new: &str) -> Result<bool> {
    let updated = crate::crypto::argon2id::as_rehash(|| {
        REHASH.execute(spi, &[client_id.into(), old.into(), new.into()])
    })?;
    Ok(!updated.is_empty())
}

fn load_from_table(spi: &SpiClient<'_>, fresh: &Fresh, client_id: &str) -> Result<Option<Client>> {
    let statement = if cache::client_has_column(c"dpop_bound_access_tokens") {
        &LOAD_CLIENT
    } else if cache::client_has_column(c"introspect_any") {
        &LOAD_CLIENT_0_2
    } else {
        &LOAD_CLIENT_0_1
    };
    let mut rows = statement.query_fresh(spi, fresh, &[client_id.into()], |row| {
        let previous: Option<String> = row.get_by_name("previous_secret")?;
        let previous_until = row
            .get_by_name::<TimestampWithTimeZone>("previous_secret_expires_at")?
            .map(backend::unix_micros);
        Ok(Client {
            id: client_id.to_owned(),
            secret: row.get_by_name("secret")?,
            previous_secret: previous.zip(previous_until),
            grant_types: row.required("grant_types")?,
            scope: row.required("scope")?,
            audience: row.required("audience")?,
            smart: row.get_by_name("smart")?.unwrap_or(false),
            token_format: match row.required::<String>("token_format")?.as_str() {
                "jwt" => TokenFormat::Jwt,
                _ => TokenFormat::Opaque,
            },
            jwt_alg: row.get_by_name("jwt_alg")?,
            access_token_expiration: row.required("access_token_expiration")?,
            refresh_token: row.required("refresh_token")?,
            refresh_token_expiration: row.required("refresh_token_expiration")?,
            active: row.required("active")?,
            role: row.get_by_name("role")?,
            role_problem: None,
            jwks: row.get_by_name::<pgrx::JsonB>("jwks")?.map(|j| j.0),
            introspect_any: row.required("introspect_any")?,
            dpop_bound_access_tokens: row.required("dpop_bound_access_tokens")?,
            tls_client_certificate_bound_access_tokens: row
                .required("tls_client_certificate_bound_access_tokens")?,
            tls_client_auth: tls_name(
                row.get_by_name("tls_name_kind")?,
                row.get_by_name("tls_name")?,
            ),
        })
    })?;
    let Some(mut client) = rows.pop() else {
        return Ok(None);
    };
    if let Some(role) = &client.role {
        client.role_problem = policy::role_problem(spi, fresh, role, ActingAs::Policy)?;
    }
    Ok(Some(client))
}

fn tls_name(kind: Option<String>, name: Option<String>) -> Option<(NameKind, String)> {
    let kind = match kind?.as_str() {
        "dn" => NameKind::SubjectDn,
        "dns" => NameKind::Dns,
        "uri" => NameKind::Uri,
        "ip" => NameKind::Ip,
        _ => NameKind::Email,
    };
    Some((kind, name?))
}

/// Insert client `id` with the secret hash `hashed` and `values` for the columns they name;
/// every other column gets its default: the table is the one home of the defaults. The
/// column names are this crate's own (api/admin.rs), never a caller's.
pub fn insert(
    spi: &mut SpiClient<'_>,
    id: &str,
    hashed: &str,
    values: Vec<(&'static str, DatumWithOid<'_>)>,
) -> Result<()> {
    let mut columns = vec!["id", "secret"];
    let mut args: Vec<DatumWithOid<'_>> = vec![id.into(), hashed.into()];
    for (column, value) in values {
        columns.push(column);
        args.push(value);
    }
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    spi.update(
        &format!(
            "INSERT INTO oauth.client ({}) VALUES ({})",
            columns.join(", "),
            placeholders.join(", ")
        ),
        None,
        &args,
    )?;
    Ok(())
}

/// Replace the secret of `client_id` by the hash `hashed`, keeping the old one for `grace`.
/// Returns false when there is no such client with a secret (or `grace` is negative).
pub fn rotate_secret(
    spi: &mut SpiClient<'_>,
    client_id: &str,
    grace: pgrx::datum::Interval,
    hashed: &str,
) -> Result<bool> {
    let table = spi.update(
        "UPDATE oauth.client
            SET previous_secret = secret,
                previous_secret_expires_at = pg_catalog.now() + $2,
                secret = $3
          WHERE id = $1 AND secret IS NOT NULL AND $2 >= interval '0'
          RETURNING 1",
        None,
        &[client_id.into(), grace.into(), hashed.into()],
    )?;
    Ok(!table.is_empty())
}

/// The lock name that orders a client's issuance against its deactivation or deletion.
fn lock_name(client_id: &str) -> String {
    format!("oauth.client {client_id}")
}

/// Hold `client` for issuance until this transaction ends, and make sure it is still active:
/// its deactivation (or deletion) waits until the token issued now has committed, and then
/// revokes it; or it committed first, and this sees it. Without this, a token issued in a
/// transaction that committed after the deactivation stayed valid.
pub fn hold_active(spi: &SpiClient<'_>, client: Rc<Client>) -> Result<Rc<Client>> {
    locks::share(&lock_name(&client.id));
    cache::accept_invalidations();
    match load(spi, &client.id)? {
        Some(current) if current.active => Ok(current),
        _ => Err(OAuthError::InvalidClient("client is inactive".into())),
    }
}

/// Taken by the trigger that deactivates or deletes a client (api/triggers.rs): waits for
/// the tokens being issued to it to commit (see `hold_active`).
pub fn lock_for_deactivation(client_id: &str) {
    locks::exclusive(&lock_name(client_id));
}

impl Client {
    /// The previous secret, while its rotation grace period lasts.
    pub fn previous_secret(&self) -> Option<&str> {
        self.previous_secret
            .as_ref()
            .filter(|(_, until)| *until > backend::now_micros())
            .map(|(hash, _)| hash.as_str())
    }

    pub fn has_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Refresh tokens are on when `refresh_token` is true (Aidbox's switch) or the
    /// `refresh_token` grant is listed (RFC 7591's spelling); either enables both.
    pub fn refresh_enabled(&self) -> bool {
        self.refresh_token || self.has_grant("refresh_token")
    }
}
