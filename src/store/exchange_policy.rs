//! Token exchange policy (RFC 8693): which client may exchange the tokens issued to which
//! client, and for what (`oauth.exchange_policy`). Read under a fresh snapshot at each
//! exchange, never cached: a row a DBA deletes stops the next exchange.

use pgrx::pg_sys::BuiltinOid::TEXTOID;
use pgrx::spi::SpiClient;

use crate::error::Result;
use crate::pg::cache::Fresh;
use crate::pg::db::Statement;

/// What `client_id` may do with the tokens of `subject_client_id`.
#[derive(Debug, Clone)]
pub struct ExchangePolicy {
    /// The most the new token may have (within the subject's); None: the subject's scopes.
    pub scope: Option<Vec<String>>,
    /// The audiences it may have; None: those the exchanging client may have.
    pub audience: Option<Vec<String>>,
    /// May exchange without an actor token (the new token then does not say who acts).
    pub impersonation: bool,
}

static LOAD: Statement = Statement::new(
    "SELECT scope, audience, impersonation FROM oauth.exchange_policy
      WHERE client_id = $1 AND subject_client_id = $2",
    &[TEXTOID, TEXTOID],
);

/// The policy row for `client_id` exchanging tokens of `subject_client_id`; None: refused.
pub fn load(
    spi: &SpiClient<'_>,
    client_id: &str,
    subject_client_id: &str,
) -> Result<Option<ExchangePolicy>> {
    let fresh = Fresh::take();
    let rows = LOAD.query_fresh(
        spi,
        &fresh,
        &[client_id.into(), subject_client_id.into()],
        |row| {
            Ok(ExchangePolicy {
                scope: row.get(1)?,
                audience: row.get(2)?,
                impersonation: row.get(3)?.unwrap_or(false),
            })
        },
    )?;
    Ok(rows.into_iter().next())
}
