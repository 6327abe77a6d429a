//! Other issuers whose tokens may be exchanged (RFC 8693; `oauth.trusted_issuer`): read under
//! a fresh snapshot at each exchange, never cached, so a DBA's change (new keys, a removed
//! issuer) applies to the next request.

use pgrx::pg_sys::BuiltinOid::TEXTOID;
use pgrx::spi::SpiClient;

use crate::error::Result;
use crate::pg::cache::Fresh;
use crate::pg::db::Statement;

/// A trusted issuer's row.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    pub issuer: String,
    pub jwks: serde_json::Value,
    pub algorithms: Vec<String>,
    pub audiences: Vec<String>,
    pub max_token_age: i32,
    pub token_type: Option<String>,
    pub subject_client_id: String,
    pub scope: Vec<String>,
}

static LOAD: Statement = Statement::new(
    "SELECT jwks, algorithms, audiences, max_token_age, token_type, subject_client_id, scope
       FROM oauth.trusted_issuer WHERE issuer = $1",
    &[TEXTOID],
);

/// The row of `issuer`; None: its tokens are not exchanged.
pub fn load(spi: &SpiClient<'_>, issuer: &str) -> Result<Option<TrustedIssuer>> {
    let fresh = Fresh::take();
    let rows = LOAD.query_fresh(spi, &fresh, &[issuer.into()], |row| {
        Ok(TrustedIssuer {
            issuer: issuer.to_owned(),
            jwks: row.get::<pgrx::JsonB>(1)?.map(|j| j.0).unwrap_or_default(),
            algorithms: row.get(2)?.unwrap_or_default(),
            audiences: row.get(3)?.unwrap_or_default(),
            max_token_age: row.get(4)?.unwrap_or(0),
            token_type: row.get(5)?,
            subject_client_id: row.get(6)?.unwrap_or_default(),
            scope: row.get(7)?.unwrap_or_default(),
        })
    })?;
    Ok(rows.into_iter().next())
}
