-- Run once, as a superuser, in the database PostgREST serves:
--   psql -d app -v issuer=https://api.example.com -f examples/postgrest/setup.sql
-- (issuer defaults to http://127.0.0.1:3000, the address in postgrest.conf).
\set ON_ERROR_STOP on
\if :{?issuer}
\else
  \set issuer 'http://127.0.0.1:3000'
\endif

CREATE EXTENSION IF NOT EXISTS pg_oauth;

-- The issuer: the iss of every JWT, and the audience PostgREST expects (jwt-aud).
SELECT format('ALTER DATABASE %I SET pg_oauth.issuer = %L', current_database(), :'issuer') \gexec

-- PostgREST's conventional roles: it logs in as authenticator and switches to anon (no
-- token) or to the role in the token (a client's policy).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN
        CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD 'change-me';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN;
    END IF;
END
$$;
GRANT anon TO authenticator;

-- The API schema PostgREST exposes, with the OAuth endpoints in it:
-- POST /rpc/token, /rpc/revoke, /rpc/introspect; GET /rpc/jwks, /rpc/metadata.
CREATE SCHEMA IF NOT EXISTS api;
SELECT oauth.create_http_endpoints('api', anon_role => 'anon', authenticator_role => 'authenticator');
