//! What a rebuild of the login state (authn/login_state.rs) reads: the clients with their
//! policy role, and the open JWT sessions issued for the login audience; read under a lock
//! that keeps every writer of these tables (and of oauth.signing_key) out until the state is
//! in shared memory, so that no change committed meanwhile is lost.

use pgrx::pg_sys::BuiltinOid::TEXTOID;
use pgrx::spi::SpiClient;

use crate::error::Result;
use crate::pg::cache::Fresh;
use crate::pg::db::Statement;

/// SHARE: conflicts with every INSERT, UPDATE and DELETE, and with no reader. Waits at most
/// `lock_timeout` (the caller sets it).
static LOCK: Statement = Statement::new(
    "LOCK TABLE oauth.session, oauth.client, oauth.policy, oauth.signing_key IN SHARE MODE",
    &[],
);

pub fn lock_writers(spi: &mut SpiClient<'_>) -> Result<()> {
    LOCK.execute(spi, &[])?;
    Ok(())
}

static CLIENTS: Statement = Statement::new(
    "SELECT c.id, p.role::text AS role
       FROM oauth.client c JOIN oauth.policy p ON p.client_id = c.id
      WHERE c.active",
    &[],
);

/// (client id, policy role) of the clients whose tokens may log in.
pub fn clients(spi: &SpiClient<'_>, fresh: &Fresh) -> Result<Vec<(String, String)>> {
    CLIENTS.query_fresh(spi, fresh, &[], |row| {
        Ok((row.required("id")?, row.required("role")?))
    })
}

/// Both rows, locked against change until this transaction ends: a client and its policy are
/// written by different statements, perhaps at once, and whichever commits second must
/// publish what both say (a concurrent writer of the other row is waited for and then read).
static CLIENT_ROLE: Statement = Statement::new(
    "SELECT p.role::text
       FROM oauth.client c JOIN oauth.policy p ON p.client_id = c.id
      WHERE c.id = $1 AND c.active
        FOR SHARE OF c, p",
    &[TEXTOID],
);

/// The role `client_id`'s tokens log in as now (an active client with a policy), as this
/// transaction has it.
pub fn client_role(spi: &mut SpiClient<'_>, client_id: &str) -> Result<Option<String>> {
    let rows = CLIENT_ROLE.execute(spi, &[client_id.into()])?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(rows.first().get::<String>(1)?)
}

/// An open session that may log in.
pub struct OpenToken {
    pub id: [u8; 16],
    pub client_id: String,
    pub role: String,
    pub expires_at_us: i64,
}

static OPEN_TOKENS: Statement = Statement::new(
    "SELECT id, client_id, role,
            (pg_catalog.date_part('epoch', expires_at) * 1000000)::int8 AS expires_at_us
       FROM oauth.session
      WHERE revoked_at IS NULL AND expires_at > pg_catalog.clock_timestamp()
        AND format = 'jwt' AND role IS NOT NULL AND $1 = ANY (audience)
        AND jkt IS NULL AND x5t IS NULL",
    &[TEXTOID],
);

pub fn open_tokens(spi: &SpiClient<'_>, fresh: &Fresh, audience: &str) -> Result<Vec<OpenToken>> {
    OPEN_TOKENS.query_fresh(spi, fresh, &[audience.into()], |row| {
        let id: pgrx::Uuid = row.required("id")?;
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(id.as_bytes());
        Ok(OpenToken {
            id: bytes,
            client_id: row.required("client_id")?,
            role: row.required("role")?,
            expires_at_us: row.required("expires_at_us")?,
        })
    })
}
