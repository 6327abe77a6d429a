//! oauth.client_assertion_jti: the ids of client assertions accepted, kept until they expire,
//! so that none is accepted twice (RFC 7523 §3).

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::BuiltinOid::{TEXTOID, TIMESTAMPTZOID};
use pgrx::spi::SpiClient;

use crate::error::Result;
use crate::pg::db::Statement;

static REMEMBER: Statement = Statement::new(
    "INSERT INTO oauth.client_assertion_jti (client_id, jti, expires_at)
     VALUES ($1, $2, $3)
     ON CONFLICT DO NOTHING
     RETURNING 1",
    &[TEXTOID, TEXTOID, TIMESTAMPTZOID],
);

/// Record that `client_id` used assertion `jti`, accepted until `until`: false when it had
/// been used already.
pub fn remember(
    spi: &mut SpiClient<'_>,
    client_id: &str,
    jti: &str,
    until: TimestampWithTimeZone,
) -> Result<bool> {
    Ok(!REMEMBER
        .execute(spi, &[client_id.into(), jti.into(), until.into()])?
        .is_empty())
}
