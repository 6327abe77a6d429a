//! Policy roles: the one rule for which database roles tokens may act as.
//!
//! Checked when a policy is written (the `policy_check_role` trigger calls
//! `oauth.policy_role_problem`) and again whenever a client is loaded for issuance, under
//! the same fresh snapshot as the client (a role can gain a privilege or a membership
//! later; those changes invalidate the client cache, see cache.rs). The rule reads only
//! pg_catalog, so it also holds against an older pg_oauth schema before
//! `ALTER EXTENSION pg_oauth UPDATE`.

use pgrx::pg_sys::BuiltinOid::{BOOLOID, TEXTOID};
use pgrx::spi::SpiClient;

use crate::error::Result;
use crate::pg::cache::Fresh;
use crate::pg::db::Statement;

/// Why a role may not be used, or NULL. Refused: a missing role; one that is, or is a
/// member (through any chain) of, a role with SUPERUSER, CREATEROLE (superuser-equivalent
/// before PostgreSQL 16), BYPASSRLS or REPLICATION; members of the predefined roles that
/// reach the server's files, programs or all data, that see every session's query text
/// (pg_read_all_stats, pg_monitor: a running auth_token's secret), its settings, or may
/// signal other backends; and, unless $2 (the console), members of pg_oauth's own roles
/// (oauth_admin manages clients and keys; oauth_app calls auth_token and auth_revoke for any
/// token it is shown).
static ROLE_PROBLEM: Statement = Statement::new(
    "SELECT CASE
        WHEN r.oid IS NULL THEN pg_catalog.format('role \"%s\" does not exist', $1)
        ELSE (SELECT CASE WHEN m.oid = r.oid
                          THEN pg_catalog.format('role \"%s\" %s', $1, m.what)
                          ELSE pg_catalog.format('role \"%s\" is a member of \"%s\", which %s',
                                                 $1, m.rolname, m.what)
                     END
                FROM (SELECT p.oid, p.rolname,
                             CASE WHEN p.rolsuper THEN 'is a superuser'
                                  WHEN p.rolcreaterole THEN 'has CREATEROLE'
                                  WHEN p.rolbypassrls THEN 'has BYPASSRLS'
                                  WHEN p.rolreplication THEN 'has REPLICATION'
                                  WHEN p.rolname IN ('oauth_admin', 'oauth_app')
                                       THEN 'administers or calls pg_oauth'
                                  WHEN p.rolname IN ('pg_monitor', 'pg_read_all_stats', 'pg_read_all_settings')
                                       THEN 'reads every session''s queries or the server''s settings'
                                  WHEN p.rolname = 'pg_signal_backend'
                                       THEN 'may signal other sessions'
                                  ELSE 'reaches the server''s files, programs or all data'
                             END AS what
                        FROM pg_catalog.pg_roles p
                       WHERE (p.rolsuper OR p.rolcreaterole OR p.rolbypassrls OR p.rolreplication
                              OR p.rolname IN ('pg_execute_server_program', 'pg_read_server_files',
                                               'pg_write_server_files', 'pg_read_all_data',
                                               'pg_write_all_data', 'pg_monitor',
                                               'pg_read_all_stats', 'pg_read_all_settings',
                                               'pg_signal_backend')
                              OR (p.rolname IN ('oauth_admin', 'oauth_app') AND NOT $2))
                         AND (p.oid = r.oid OR pg_catalog.pg_has_role(r.oid, p.oid, 'MEMBER'))
                       ORDER BY p.oid <> r.oid, p.rolname
                       LIMIT 1) AS m)
     END
       FROM (SELECT) AS one
       LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1",
    &[TEXTOID, BOOLOID],
);

/// Who acts as a role: a client's tokens (its policy), or its console actions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ActingAs {
    Policy,
    /// The console (oauth.console_access) administers pg_oauth: members of oauth_admin (and
    /// so of oauth_app) are what it is for; the rest of the rule holds.
    Console,
}

/// Why `role` may not be acted as, or `None`.
pub fn role_problem(
    spi: &SpiClient<'_>,
    fresh: &Fresh,
    role: &str,
    acting: ActingAs,
) -> Result<Option<String>> {
    let console = acting == ActingAs::Console;
    let rows = ROLE_PROBLEM.query_fresh(spi, fresh, &[role.into(), console.into()], |row| {
        row.get::<String>(1)
    })?;
    Ok(rows.into_iter().next().flatten())
}
