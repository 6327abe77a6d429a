//! The console's SQL (/console on the listener, flow/console.rs): who may sign in to it
//! (oauth.console_access), and what it reads and does. Everything but `access` runs as the
//! role the console acts as, so these are the statements that role's DBA would type, checked
//! by PostgreSQL's privileges as theirs would be: the columns oauth_admin may read (never a
//! secret hash or a private key), the functions it may call. Each answers one jsonb.

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::BuiltinOid::{BOOLOID, INT4OID, TEXTARRAYOID, TEXTOID};
use pgrx::spi::SpiClient;
use serde_json::Value;

use crate::error::Result;
use crate::pg::db::Statement;

/// How many rows a list shows at most (the newest first).
pub const MAX_ROWS: i32 = 200;

static ACCESS: Statement = Statement::new(
    "SELECT role::text FROM oauth.console_access WHERE client_id = $1",
    &[TEXTOID],
);

/// The role the console acts as for `client_id`'s tokens, if it may sign in at all.
pub fn access(spi: &SpiClient<'_>, client_id: &str) -> Result<Option<String>> {
    let rows = ACCESS.query(spi, &[client_id.into()])?;
    Ok(match rows.into_iter().next() {
        Some(row) => row.get::<String>(1)?,
        None => None,
    })
}

static CLIENTS: Statement = Statement::new(
    "SELECT coalesce(jsonb_agg(jsonb_build_object(
                'id', c.id, 'active', c.active, 'scope', c.scope, 'audience', c.audience,
                'grant_types', c.grant_types, 'token_format', c.token_format,
                'access_token_expiration', c.access_token_expiration,
                'created_at', c.created_at, 'updated_at', c.updated_at,
                'previous_secret_expires_at', c.previous_secret_expires_at,
                'role', p.role, 'console_role', a.role) ORDER BY c.id), '[]'::jsonb)
       FROM (SELECT id, active, scope, audience, grant_types, token_format,
                    access_token_expiration, created_at, updated_at, previous_secret_expires_at
               FROM oauth.client
              WHERE $1::text IS NULL OR pg_catalog.strpos(id, $1) > 0
              ORDER BY id LIMIT $2) AS c
       LEFT JOIN oauth.policy p ON p.client_id = c.id
       LEFT JOIN oauth.console_access a ON a.client_id = c.id",
    &[TEXTOID, INT4OID],
);

static CREATE_CLIENT: Statement = Statement::new(
    "SELECT oauth.create_client(id => $1, scope => $2, token_format => $3)",
    &[TEXTOID, TEXTARRAYOID, TEXTOID],
);

static SET_POLICY: Statement = Statement::new(
    "INSERT INTO oauth.policy (client_id, role) VALUES ($1, $2)
     ON CONFLICT (client_id) DO UPDATE SET role = EXCLUDED.role",
    &[TEXTOID, TEXTOID],
);

static DROP_POLICY: Statement =
    Statement::new("DELETE FROM oauth.policy WHERE client_id = $1", &[TEXTOID]);

static UPDATE_CLIENT: Statement = Statement::new(
    "UPDATE oauth.client SET scope = coalesce($2, scope), active = coalesce($3, active)
      WHERE id = $1 RETURNING id",
    &[TEXTOID, TEXTARRAYOID, BOOLOID],
);

static ROTATE_SECRET: Statement =
    Statement::new("SELECT oauth.rotate_client_secret($1)", &[TEXTOID]);

static SESSIONS: Statement = Statement::new(
    "SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.issued_at DESC), '[]'::jsonb)
       FROM (SELECT id, client_id, format, scope, audience, role, issued_at, expires_at,
                    revoked_at, revoked_reason, jkt IS NOT NULL OR x5t IS NOT NULL AS bound
               FROM oauth.session
              WHERE ($1::text IS NULL OR client_id = $1)
                AND ($2 OR (revoked_at IS NULL AND expires_at > now()))
              ORDER BY issued_at DESC LIMIT $3) AS s",
    &[TEXTOID, BOOLOID, INT4OID],
);

static REVOKE_SESSION: Statement = Statement::new(
    "WITH revoked AS (
        UPDATE oauth.session SET revoked_at = now(), revoked_reason = $2
         WHERE id = $1::uuid AND revoked_at IS NULL AND expires_at > now() RETURNING 1)
     SELECT jsonb_build_object('sessions', count(*), 'refresh_grants', 0) FROM revoked",
    &[TEXTOID, TEXTOID],
);

// Refresh grants first: revoking one revokes the sessions issued from it (a trigger), which
// the second statement then no longer finds live.
static REVOKE_CLIENT_GRANTS: Statement = Statement::new(
    "WITH revoked AS (
        UPDATE oauth.refresh_family SET revoked_at = now(), revoked_reason = $2
         WHERE client_id = $1 AND revoked_at IS NULL RETURNING 1)
     SELECT count(*)::int FROM revoked",
    &[TEXTOID, TEXTOID],
);

static REVOKE_CLIENT_SESSIONS: Statement = Statement::new(
    "WITH revoked AS (
        UPDATE oauth.session SET revoked_at = now(), revoked_reason = $2
         WHERE client_id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING 1)
     SELECT jsonb_build_object('sessions', count(*), 'refresh_grants', $3::int) FROM revoked",
    &[TEXTOID, TEXTOID, INT4OID],
);

static KEYS: Statement = Statement::new(
    "SELECT coalesce(jsonb_agg(jsonb_build_object(
                'kid', kid, 'alg', alg, 'state', state, 'created_at', created_at,
                'activated_at', activated_at, 'retired_at', retired_at, 'expires_at', expires_at)
                ORDER BY alg, created_at DESC), '[]'::jsonb)
       FROM oauth.signing_key",
    &[],
);

static ROTATE_KEY: Statement = Statement::new("SELECT oauth.rotate_signing_key($1)", &[TEXTOID]);

static AUDIT: Statement = Statement::new(
    "SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.at DESC), '[]'::jsonb)
       FROM (SELECT at, event, client_id, session_id, detail FROM oauth.audit_event
              WHERE at > now() - interval '7 days'
                AND ($1::text IS NULL OR client_id = $1)
                AND ($2::text IS NULL OR event = $2)
                AND ($3::text IS NULL OR detail ->> 'source' = $3)
              ORDER BY at DESC LIMIT $4) AS e",
    &[TEXTOID, TEXTOID, TEXTOID, INT4OID],
);

static STATS: Statement = Statement::new(
    "SELECT coalesce(jsonb_agg(jsonb_build_object('database', database, 'metric', metric,
                                                  'labels', labels, 'value', value)), '[]'::jsonb)
       FROM oauth.stats WHERE value <> 0",
    &[],
);

/// The one jsonb (or text, as a JSON string) a statement answers.
fn one(rows: pgrx::spi::SpiTupleTable<'_>) -> Result<Value> {
    let Some(row) = rows.into_iter().next() else {
        return Ok(Value::Null);
    };
    if let Ok(Some(json)) = row.get::<pgrx::JsonB>(1) {
        return Ok(json.0);
    }
    Ok(row.get::<String>(1)?.map_or(Value::Null, Value::String))
}

/// A list: clients (`filter`: part of the id), sessions (of `filter`, a client id; `all`:
/// revoked and expired ones too), signing keys, the audit trail, the counters.
pub enum List<'a> {
    Clients {
        filter: Option<&'a str>,
    },
    Sessions {
        client_id: Option<&'a str>,
        all: bool,
    },
    Keys,
    Audit {
        client_id: Option<&'a str>,
        event: Option<&'a str>,
        source: Option<&'a str>,
    },
    Stats,
}

pub fn list(spi: &SpiClient<'_>, what: List<'_>) -> Result<Value> {
    let rows = match what {
        List::Clients { filter } => CLIENTS.query(spi, &[filter.into(), MAX_ROWS.into()])?,
        List::Sessions { client_id, all } => {
            SESSIONS.query(spi, &[client_id.into(), all.into(), MAX_ROWS.into()])?
        }
        List::Keys => KEYS.query(spi, &[])?,
        List::Audit {
            client_id,
            event,
            source,
        } => AUDIT.query(
            spi,
            &[
                client_id.into(),
                event.into(),
                source.into(),
                MAX_ROWS.into(),
            ],
        )?,
        List::Stats => STATS.query(spi, &[])?,
    };
    one(rows)
}

/// `oauth.create_client` (the secret, once), then the client's policy role if given.
pub fn create_client(
    spi: &mut SpiClient<'_>,
    id: &str,
    scope: Vec<String>,
    token_format: Option<&str>,
    role: Option<&str>,
) -> Result<Value> {
    let secret = one(CREATE_CLIENT.execute(spi, &[id.into(), scope.into(), token_format.into()])?)?;
    if let Some(role) = role {
        SET_POLICY.execute(spi, &[id.into(), role.into()])?;
    }
    Ok(secret)
}

/// Change a client's scopes, whether it is active, its policy role (`Some("")`: none).
/// Whether the client exists.
pub fn update_client(
    spi: &mut SpiClient<'_>,
    id: &str,
    scope: Option<Vec<String>>,
    active: Option<bool>,
    role: Option<&str>,
) -> Result<bool> {
    let found = !UPDATE_CLIENT
        .execute(spi, &[id.into(), scope.into(), active.into()])?
        .is_empty();
    match role {
        Some("") if found => {
            DROP_POLICY.execute(spi, &[id.into()])?;
        }
        Some(role) if found => {
            SET_POLICY.execute(spi, &[id.into(), role.into()])?;
        }
        _ => {}
    }
    Ok(found)
}

/// `oauth.rotate_client_secret` with its default grace: the new secret, once.
pub fn rotate_secret(spi: &mut SpiClient<'_>, id: &str) -> Result<Value> {
    one(ROTATE_SECRET.execute(spi, &[id.into()])?)
}

/// `oauth.rotate_signing_key`: the new active kid.
pub fn rotate_key(spi: &mut SpiClient<'_>, alg: Option<&str>) -> Result<Value> {
    one(ROTATE_KEY.execute(spi, &[alg.into()])?)
}

/// What to revoke: one session, or everything live of a client (its refresh grants too).
pub enum Revoke<'a> {
    Session(&'a str),
    Client(&'a str),
}

/// Revoke with `reason`; how many sessions and refresh grants were live and are revoked.
pub fn revoke(spi: &mut SpiClient<'_>, what: Revoke<'_>, reason: &str) -> Result<Value> {
    let args: Vec<DatumWithOid<'_>>;
    let rows = match what {
        Revoke::Session(id) => REVOKE_SESSION.execute(spi, &[id.into(), reason.into()])?,
        Revoke::Client(id) => {
            let grants = REVOKE_CLIENT_GRANTS
                .execute(spi, &[id.into(), reason.into()])?
                .first()
                .get::<i32>(1)?
                .unwrap_or(0);
            args = vec![id.into(), reason.into(), grants.into()];
            REVOKE_CLIENT_SESSIONS.execute(spi, &args)?
        }
    };
    one(rows)
}
