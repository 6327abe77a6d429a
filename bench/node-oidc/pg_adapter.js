// A PostgreSQL adapter for node-oidc-provider, so the comparison can be made at equal
// durability: every token the provider issues is committed (one INSERT ... ON CONFLICT, its
// own transaction, synchronous_commit as the server has it) before the response is sent, as
// pg_oauth commits a session row per token. The shape follows the adapter interface of
// oidc-provider's docs (upsert/find/findByUid/findByUserCode/consume/destroy/revokeByGrantId):
// one table, the payload as jsonb, expiry kept, lookups by the columns they need.
import pg from 'pg';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS oidc_payload (
  model       text NOT NULL,
  id          text NOT NULL,
  payload     jsonb NOT NULL,
  grant_id    text,
  user_code   text,
  uid         text,
  expires_at  timestamptz,
  consumed_at timestamptz,
  PRIMARY KEY (model, id)
);
CREATE INDEX IF NOT EXISTS oidc_payload_grant_id ON oidc_payload (grant_id);
CREATE INDEX IF NOT EXISTS oidc_payload_user_code ON oidc_payload (user_code);
CREATE INDEX IF NOT EXISTS oidc_payload_uid ON oidc_payload (uid);
`;

let pool;

/** Connect (DATABASE_URL, libpq-style) and create the table. */
export async function connect(connectionString, max) {
  pool = new pg.Pool({ connectionString, max });
  await pool.query(SCHEMA);
}

export default class PgAdapter {
  constructor(model) {
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    await pool.query(
      `INSERT INTO oidc_payload (model, id, payload, grant_id, user_code, uid, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
       ON CONFLICT (model, id) DO UPDATE
         SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id,
             user_code = EXCLUDED.user_code, uid = EXCLUDED.uid, expires_at = EXCLUDED.expires_at`,
      [this.model, id, payload, payload.grantId ?? null, payload.userCode ?? null,
        payload.uid ?? null, expiresIn ?? null],
    );
  }

  async #findBy(column, value) {
    const { rows } = await pool.query(
      `SELECT payload, consumed_at FROM oidc_payload
        WHERE model = $1 AND ${column} = $2 AND (expires_at IS NULL OR expires_at > now())`,
      [this.model, value],
    );
    if (rows.length === 0) return undefined;
    const { payload, consumed_at: consumed } = rows[0];
    return consumed ? { ...payload, consumed: Math.floor(consumed.getTime() / 1000) } : payload;
  }

  find(id) { return this.#findBy('id', id); }

  findByUid(uid) { return this.#findBy('uid', uid); }

  findByUserCode(userCode) { return this.#findBy('user_code', userCode); }

  async consume(id) {
    await pool.query(
      'UPDATE oidc_payload SET consumed_at = now() WHERE model = $1 AND id = $2',
      [this.model, id],
    );
  }

  async destroy(id) {
    await pool.query('DELETE FROM oidc_payload WHERE model = $1 AND id = $2', [this.model, id]);
  }

  async revokeByGrantId(grantId) {
    await pool.query('DELETE FROM oidc_payload WHERE grant_id = $1', [grantId]);
  }
}
