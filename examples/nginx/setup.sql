-- The PostgREST recipe (examples/postgrest/setup.sql) behind the nginx recipe
-- (examples/nginx/pg_oauth.conf). Run once, as a superuser, in the database PostgREST serves:
--   psql -d app -v issuer=https://auth.example.com -f examples/nginx/setup.sql
-- issuer is nginx's public origin, and PostgREST's jwt-aud (PGRST_JWT_AUD) must equal it.
\set ON_ERROR_STOP on
\if :{?issuer}
\else
  \echo 'set the public origin: psql -v issuer=https://auth.example.com ...'
  \quit
\endif
\ir ../postgrest/setup.sql

-- The metadata names the proxy's paths (/token, /jwks, ...) instead of PostgREST's /rpc/...
SELECT format('ALTER DATABASE %I SET pg_oauth.endpoint_prefix = %L', current_database(), '') \gexec
-- The caller's address comes from the header nginx sets (and only nginx can: PostgREST
-- listens on loopback). Lockouts and the audit trail are then per caller, not per proxy.
SELECT format('ALTER DATABASE %I SET pg_oauth.http_client_address_header = %L',
              current_database(), 'x-forwarded-for') \gexec
-- The client's TLS certificate comes in the header nginx sets (RFC 8705: client
-- authentication by certificate, certificate-bound tokens checked by the pre-request hook).
SELECT format('ALTER DATABASE %I SET pg_oauth.client_certificate_header = %L',
              current_database(), 'x-ssl-client-cert') \gexec
