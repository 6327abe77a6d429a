-- Benchmark fixtures (run by the bench driver in a throwaway database).
\set ON_ERROR_STOP on
CREATE EXTENSION pg_oauth;
CREATE EXTENSION pgcrypto;
CREATE SCHEMA bench;

-- The floor: the same table as a partition of oauth.session, which tokens are inserted into
-- (columns, primary key, indexes).
CREATE TABLE bench.floor_session (LIKE oauth.session_p00 INCLUDING ALL);

INSERT INTO oauth.client (id, secret, scope, token_format, jwt_alg, access_token_expiration, refresh_token)
VALUES ('bench-opaque', 'benchsecret', '{read}', 'opaque', NULL, 86400, false),
       ('bench-es256', 'benchsecret', '{read}', 'jwt', 'ES256', 86400, false),
       ('bench-eddsa', 'benchsecret', '{read}', 'jwt', 'EdDSA', 86400, false),
       ('bench-rs256', 'benchsecret', '{read}', 'jwt', 'RS256', 86400, false),
       ('bench-hs256', 'benchsecret', '{read}', 'jwt', 'HS256', 86400, false),
       ('bench-refresh', 'benchsecret', '{read}', 'opaque', NULL, 86400, true),
       -- The flood scenario's client: a generated-length secret, so its proof lets it
       -- through while the flood's shared source is throttled.
       ('bench-flood', 'Kq3vZ8yT1bW6nR4pL0sX9dF2gH7jM5cV-aE_uIoP3kQ', '{read}', 'opaque', NULL, 86400, false);
SELECT oauth.ensure_signing_keys(alg) FROM unnest('{ES256,EdDSA,RS256,HS256}'::text[]) AS alg;

-- One refresh token chain per pgbench client (:client_id), reseeded before each run.
CREATE TABLE bench.refresh_chain (id int PRIMARY KEY, rt text NOT NULL);
