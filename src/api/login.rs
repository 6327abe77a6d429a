//! PostgreSQL 18's OAuth login with pg_oauth tokens, as SQL sees it: the triggers that publish
//! each committed change of what may log in (authn/login_state.rs), `oauth.login_refresh()`
//! and `oauth.login_status()`.

use pgrx::datum::TryFromDatumError;
use pgrx::prelude::*;

use crate::authn::login_state::{self, Rebuilt};
use crate::error::OrRaise;
use crate::pg::backend;
use crate::pg::shmem::login;
use crate::store::login as login_tables;

type Row<'a> = Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, TryFromDatumError>;

fn micros(ts: Option<TimestampWithTimeZone>) -> Option<i64> {
    ts.map(backend::unix_micros)
}

/// AFTER UPDATE of an open session's revoked_at, role, expiry, audience or client, and AFTER
/// DELETE of one that had not expired: its token no longer logs in (a changed session is
/// dropped rather than followed: it logs in again after a rebuild if it still may).
#[pg_trigger]
fn login_session_closed<'a>(trigger: &'a PgTrigger<'a>) -> Row<'a> {
    let old = trigger.old().expect("a row-level UPDATE or DELETE trigger");
    if let Some(id) = old.get_by_name::<pgrx::Uuid>("id")? {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(id.as_bytes());
        login_state::token_closed(bytes);
    }
    Ok(None)
}

/// AFTER INSERT, UPDATE OF id, active, or DELETE on oauth.client, and AFTER INSERT, UPDATE or
/// DELETE on oauth.policy: the role the client's tokens log in as, read from both tables.
#[pg_trigger]
fn login_client_changed<'a>(trigger: &'a PgTrigger<'a>) -> Row<'a> {
    let column = if trigger.table_name().is_ok_and(|t| t == "policy") {
        "client_id"
    } else {
        "id"
    };
    let mut clients: Vec<String> = Vec::new();
    for row in [trigger.new(), trigger.old()].into_iter().flatten() {
        if let Some(client) = row.get_by_name::<String>(column)? {
            if !clients.contains(&client) {
                clients.push(client);
            }
        }
    }
    for client in clients {
        let role = Spi::connect_mut(|spi| login_tables::client_role(spi, &client)).or_raise();
        login_state::client_changed(&client, role);
    }
    Ok(None)
}

/// AFTER INSERT, UPDATE or DELETE on oauth.signing_key: a key verifies logins while it is
/// published (next, active, retired until its expires_at).
#[pg_trigger]
fn login_signing_key_changed<'a>(trigger: &'a PgTrigger<'a>) -> Row<'a> {
    let new_kid = match trigger.new() {
        Some(new) => {
            let kid: Option<String> = new.get_by_name("kid")?;
            let alg: Option<String> = new.get_by_name("alg")?;
            let private: Option<&[u8]> = new.get_by_name("private_key")?;
            let state: Option<String> = new.get_by_name("state")?;
            let until = micros(new.get_by_name("expires_at")?);
            if let (Some(kid), Some(alg), Some(private)) = (&kid, alg, private) {
                let ended = state.as_deref() == Some("retired")
                    && until.is_none_or(|u| u <= backend::now_micros());
                if ended {
                    login_state::key_deleted(kid);
                } else {
                    login_state::key_written(kid, &alg, private, until);
                }
            }
            kid
        }
        None => None,
    };
    if let Some(old) = trigger.old() {
        let kid: Option<String> = old.get_by_name("kid")?;
        if let Some(kid) = kid.filter(|k| Some(k) != new_kid.as_ref()) {
            login_state::key_deleted(&kid);
        }
    }
    Ok(None)
}

/// AFTER TRUNCATE of oauth.session, oauth.client, oauth.policy or oauth.signing_key: logins
/// are refused until the worker rebuilds the state (within a second).
#[pg_trigger]
fn login_reset<'a>(_trigger: &'a PgTrigger<'a>) -> Row<'a> {
    login_state::reset();
    Ok(None)
}

/// Rebuild this database's login state now (the login worker does at start, and whenever it
/// is missing). Waits at most `lock_timeout` for the writers of the tables it reads.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn login_refresh() -> String {
    backend::require_primary("rebuild the login state").or_raise();
    let rebuilt = Spi::connect_mut(login_state::rebuild).or_raise();
    describe(&rebuilt)
}

pub fn describe(rebuilt: &Rebuilt) -> String {
    match rebuilt {
        Rebuilt::Off(why) => format!("logins with pg_oauth tokens are off here: {why}"),
        Rebuilt::Done { issuer, overflow } => {
            let mut text = format!("login state of issuer {issuer} rebuilt");
            if overflow.keys + overflow.clients + overflow.tokens > 0 {
                text.push_str(&format!(
                    "; no room for {} keys, {} clients and {} tokens, which cannot log in",
                    overflow.keys, overflow.clients, overflow.tokens
                ));
            }
            text
        }
    }
}

/// What logins can check now, per issuing database; capacities in docs/login.md.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn login_status() -> TableIterator<
    'static,
    (
        name!(database, pg_sys::Oid),
        name!(issuer, String),
        name!(keys, i32),
        name!(clients, i32),
        name!(tokens, i32),
    ),
> {
    let rows: Vec<_> = login::usage(backend::now_micros())
        .into_iter()
        .map(|(db, issuer, keys, clients, tokens)| {
            (
                pg_sys::Oid::from(db),
                issuer,
                keys as i32,
                clients as i32,
                tokens as i32,
            )
        })
        .collect();
    TableIterator::new(rows)
}
