-- A protected table, the role tokens act as, and a client — the README's walk-through:
--   psql -d app -f examples/postgrest/demo.sql
\set ON_ERROR_STOP on

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'api_user') THEN
        CREATE ROLE api_user NOLOGIN;
    END IF;
END
$$;
GRANT api_user TO authenticator;
GRANT USAGE ON SCHEMA api TO api_user;

CREATE TABLE api.notes (
    id      bigserial PRIMARY KEY,
    body    text NOT NULL,
    author  text NOT NULL DEFAULT oauth.client_id()
);
ALTER TABLE api.notes ENABLE ROW LEVEL SECURITY;
-- Row-level security on the token's claims: scopes decide what a client may do.
CREATE POLICY notes_read ON api.notes FOR SELECT TO api_user
    USING (oauth.has_scope('notes:read'));
CREATE POLICY notes_write ON api.notes FOR INSERT TO api_user
    WITH CHECK (oauth.has_scope('notes:write') AND author = oauth.client_id());
GRANT SELECT, INSERT ON api.notes TO api_user;
GRANT USAGE ON SEQUENCE api.notes_id_seq TO api_user;
INSERT INTO api.notes (body, author) VALUES ('hello from the database', 'dba');

-- A client whose JWTs act as api_user.
INSERT INTO oauth.client (id, secret, grant_types, scope, token_format)
VALUES ('api-client', 'verysecret', '{client_credentials}', '{notes:read,notes:write}', 'jwt');
INSERT INTO oauth.policy (client_id, role) VALUES ('api-client', 'api_user');
