//! The console's actions (/console on the listener): sign in with a pg_oauth access token of
//! a client that oauth.console_access names, then act as that row's role. The token is
//! verified as a resource server verifies it (a bound token presented as a bearer token is
//! refused); the role is checked against the console's variant of the policy-role rule at
//! every request (store/policy.rs), since a role can gain privileges later; and the action
//! runs with that role's privileges (pg/role.rs), so PostgreSQL decides what it may do, as it
//! would for the same SQL in psql. An action that fails leaves nothing behind (its own
//! subtransaction).

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use serde_json::{json, Map, Value};

use crate::error::{OAuthError, Result};
use crate::flow::token::{self, Possession};
use crate::pg::cache::Fresh;
use crate::pg::role;
use crate::pg::subxact;
use crate::store::console::{self, List, Revoke};
use crate::store::policy::{self, ActingAs};

/// What the console asks for (`/console/api/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Who is signed in, acting as which role.
    WhoAmI,
    Clients,
    CreateClient,
    UpdateClient,
    RotateSecret,
    Sessions,
    Revoke,
    Keys,
    RotateKey,
    Audit,
    Stats,
}

const ACTIONS: [(&str, Action); 11] = [
    ("whoami", Action::WhoAmI),
    ("clients", Action::Clients),
    ("create_client", Action::CreateClient),
    ("update_client", Action::UpdateClient),
    ("rotate_secret", Action::RotateSecret),
    ("sessions", Action::Sessions),
    ("revoke", Action::Revoke),
    ("keys", Action::Keys),
    ("rotate_key", Action::RotateKey),
    ("audit", Action::Audit),
    ("stats", Action::Stats),
];

impl Action {
    pub fn named(name: &str) -> Option<Action> {
        ACTIONS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }
}

/// Who is signed in: the token's client, and the role its actions run as.
struct Operator {
    client_id: String,
    role: String,
    role_oid: pg_sys::Oid,
}

/// Check `token` and the console access of its client.
fn operator(token: &str) -> Result<Operator> {
    let claims = token::verify(token, None, Possession::default())?;
    let client_id = claims
        .get("client_id")
        .and_then(Value::as_str)
        .ok_or_else(|| OAuthError::InvalidToken("the token names no client".into()))?
        .to_owned();
    let denied = || {
        OAuthError::AccessDenied(format!(
            "client {} may not use the console",
            crate::error::quoted(&client_id)
        ))
    };
    let role = Spi::connect(|spi| console::access(spi, &client_id))?.ok_or_else(denied)?;
    let problem =
        Spi::connect(|spi| policy::role_problem(spi, &Fresh::take(), &role, ActingAs::Console))?;
    if let Some(problem) = problem {
        return Err(OAuthError::AccessDenied(format!(
            "the console may not act as this client's role: {problem}"
        )));
    }
    let role_oid = role::oid_of(&role).ok_or_else(denied)?;
    Ok(Operator {
        client_id,
        role,
        role_oid,
    })
}

/// Answer `action` for the holder of `token` with `args` (a JSON object's members).
pub fn serve(token: &str, action: Action, args: &Map<String, Value>) -> Result<Value> {
    let operator = operator(token)?;
    if action == Action::WhoAmI {
        return Ok(json!({ "client_id": operator.client_id, "role": operator.role }));
    }
    let outcome = subxact::attempt(|| {
        role::as_role(operator.role_oid, || {
            Spi::connect_mut(|spi| act(spi, action, &Args(args), &operator))
        })
    });
    match outcome {
        Ok(answer) => answer,
        // What PostgreSQL said, as psql would show it to the role's DBA (the message only:
        // a detail may quote a row).
        Err(raised) if raised.code == PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE => {
            Err(OAuthError::AccessDenied(raised.message))
        }
        Err(raised) if raised.is_lock_wait() => Err(OAuthError::TemporarilyUnavailable {
            retry_after_secs: 1,
        }),
        Err(raised) if is_internal(raised.code) => {
            warning!("pg_oauth: a console action failed: {}", raised.message);
            Err(OAuthError::ServerError(
                "the action failed; see the server log".into(),
            ))
        }
        Err(raised) => Err(OAuthError::InvalidRequest(raised.message)),
    }
}

/// Errors that are the server's, not the request's.
fn is_internal(code: PgSqlErrorCode) -> bool {
    matches!(
        code,
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
            | PgSqlErrorCode::ERRCODE_DATA_CORRUPTED
            | PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED
            | PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY
            | PgSqlErrorCode::ERRCODE_DISK_FULL
            | PgSqlErrorCode::ERRCODE_IO_ERROR
            | PgSqlErrorCode::ERRCODE_SYSTEM_ERROR
    )
}

/// The request's arguments.
struct Args<'a>(&'a Map<String, Value>);

impl Args<'_> {
    /// A text argument; empty is none.
    fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str> {
        self.text(name)
            .ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required")))
    }

    /// Scopes: a JSON array of strings or one space-separated string.
    fn scopes(&self, name: &str) -> Result<Option<Vec<String>>> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.split_whitespace().map(str::to_owned).collect())),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| OAuthError::InvalidRequest(format!("{name}: strings only"))),
            Some(_) => Err(OAuthError::InvalidRequest(format!(
                "{name}: a list of strings"
            ))),
        }
    }

    fn flag(&self, name: &str) -> Option<bool> {
        self.0.get(name).and_then(Value::as_bool)
    }
}

/// Carry out one action as the console's role.
fn act(
    spi: &mut pgrx::spi::SpiClient<'_>,
    action: Action,
    args: &Args<'_>,
    operator: &Operator,
) -> Result<Value> {
    let reason = format!("revoked at the console by {}", operator.client_id);
    match action {
        Action::WhoAmI => Ok(Value::Null),
        Action::Clients => console::list(
            spi,
            List::Clients {
                filter: args.text("filter"),
            },
        ),
        Action::Sessions => console::list(
            spi,
            List::Sessions {
                client_id: args.text("client_id"),
                all: args.flag("all").unwrap_or(false),
            },
        ),
        Action::Keys => console::list(spi, List::Keys),
        Action::Audit => console::list(
            spi,
            List::Audit {
                client_id: args.text("client_id"),
                event: args.text("event"),
                source: args.text("source"),
            },
        ),
        Action::Stats => console::list(spi, List::Stats),
        Action::CreateClient => {
            let secret = console::create_client(
                spi,
                args.required("id")?,
                args.scopes("scope")?.unwrap_or_default(),
                args.text("token_format"),
                args.text("role"),
            )?;
            Ok(json!({ "client_secret": secret }))
        }
        Action::UpdateClient => {
            let id = args.required("id")?;
            // Absent or null: unchanged; empty: no policy.
            let role = args.0.get("role").and_then(Value::as_str).map(str::trim);
            if !console::update_client(spi, id, args.scopes("scope")?, args.flag("active"), role)? {
                return Err(OAuthError::InvalidRequest(format!(
                    "no client {}",
                    crate::error::quoted(id)
                )));
            }
            Ok(json!({ "updated": id }))
        }
        Action::RotateSecret => Ok(json!({
            "client_secret": console::rotate_secret(spi, args.required("id")?)?
        })),
        Action::RotateKey => {
            Ok(json!({ "active_kid": console::rotate_key(spi, args.text("alg"))? }))
        }
        Action::Revoke => {
            let what = match (args.text("session_id"), args.text("client_id")) {
                (Some(id), None) => Revoke::Session(id),
                (None, Some(id)) => Revoke::Client(id),
                _ => {
                    return Err(OAuthError::InvalidRequest(
                        "give session_id or client_id".into(),
                    ))
                }
            };
            console::revoke(spi, what, &reason)
        }
    }
}
