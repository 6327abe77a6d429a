-- Promises of the security model that single statements can check: privileged policy
-- roles are refused, a token verifies in the transaction that issued it, one claims shape
-- for both formats, refresh re-checks audiences, retired keys end on time, introspection
-- over HTTP is limited to the caller's own tokens, and the metadata lists no client scopes.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET pg_oauth.issuer = 'https://issuer.example';

-- Policy roles: a role tokens act as must not be, nor reach, a privileged role.
CREATE ROLE trust_plain NOLOGIN;
CREATE ROLE trust_createrole NOLOGIN CREATEROLE;
CREATE ROLE trust_bypassrls NOLOGIN BYPASSRLS;
CREATE ROLE trust_replication NOLOGIN REPLICATION;
CREATE ROLE trust_super NOLOGIN SUPERUSER;
CREATE ROLE trust_middle NOLOGIN;
CREATE ROLE trust_chained NOLOGIN;
GRANT trust_super TO trust_middle;
GRANT trust_middle TO trust_chained;
CREATE ROLE trust_files NOLOGIN;
GRANT pg_read_server_files TO trust_files;
CREATE ROLE trust_writer NOLOGIN;
GRANT pg_write_all_data TO trust_writer;
SELECT r AS role, oauth.policy_role_problem(r) AS problem
  FROM unnest(ARRAY['trust_plain', 'trust_createrole', 'trust_bypassrls', 'trust_replication',
                    'trust_super', 'trust_chained', 'trust_files', 'trust_writer',
                    'trust_missing']::name[]) AS r;

INSERT INTO oauth.client (id, secret, scope, token_format, refresh_token, audience)
VALUES ('trust-jwt', 'secret-1', '{read,write}', 'jwt', true, '{https://a.example,https://b.example}'),
       ('trust-opaque', 'secret-1', '{}', 'opaque', false, '{}');
INSERT INTO oauth.policy (client_id, role) VALUES ('trust-jwt', 'trust_createrole');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO oauth.policy (client_id, role) VALUES ('trust-jwt', 'trust_chained');
INSERT INTO oauth.policy (client_id, role) VALUES ('trust-jwt', 'trust_missing');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO oauth.policy (client_id, role) VALUES ('trust-jwt', 'trust_plain');
-- A role that gains privileges after its policy was written is refused at issuance.
SELECT (oauth.auth_token('client_credentials', 'trust-jwt', 'secret-1')) ? 'access_token' AS issued;
GRANT pg_execute_server_program TO trust_plain;
SELECT oauth.auth_token('client_credentials', 'trust-jwt', 'secret-1');
\echo :LAST_ERROR_SQLSTATE
REVOKE pg_execute_server_program FROM trust_plain;
ALTER ROLE trust_plain BYPASSRLS;
SELECT oauth.auth_token('client_credentials', 'trust-jwt', 'secret-1');
ALTER ROLE trust_plain NOBYPASSRLS;
SELECT (oauth.auth_token('client_credentials', 'trust-jwt', 'secret-1')) ? 'access_token' AS issued_again;

-- A token verifies in the very statement (and transaction) that issued it.
SELECT oauth.auth_verify((oauth.auth_token('client_credentials', 'trust-jwt', 'secret-1', 'read')) ->> 'access_token')
       - 'iat' - 'exp' - 'jti' AS jwt_claims;
SELECT oauth.auth_verify((oauth.auth_token('client_credentials', 'trust-opaque', 'secret-1')) ->> 'access_token')
       - 'iat' - 'exp' - 'jti' AS opaque_claims;
BEGIN;
SELECT oauth.auth_token('client_credentials', 'trust-opaque', 'secret-1') ->> 'access_token' AS opaque \gset
SELECT oauth.auth_verify(:'opaque') ->> 'sub' AS verified_in_its_transaction;
ROLLBACK;
SELECT oauth.auth_verify(:'opaque');

-- One claims shape: a JWT client without scopes carries exactly the keys an opaque one does.
INSERT INTO oauth.client (id, secret, token_format) VALUES ('trust-jwt-noscope', 'secret-1', 'jwt');
SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(
            oauth.auth_verify((oauth.auth_token('client_credentials', 'trust-jwt-noscope', 'secret-1')) ->> 'access_token')) AS k)
     = (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(
            oauth.auth_verify((oauth.auth_token('client_credentials', 'trust-opaque', 'secret-1')) ->> 'access_token')) AS k)
       AS same_keys;

-- Refresh re-checks audiences against the client, as it does scopes.
SELECT oauth.auth_token('client_credentials', 'trust-jwt', 'secret-1', audience => 'https://a.example https://b.example') AS grant1 \gset
UPDATE oauth.client SET audience = '{https://a.example}' WHERE id = 'trust-jwt';
SELECT oauth.auth_token('refresh_token', 'trust-jwt', 'secret-1', refresh_token => :'grant1'::jsonb ->> 'refresh_token');
\echo :LAST_ERROR_SQLSTATE
-- Narrowing to what is still allowed works.
SELECT oauth.auth_verify((oauth.auth_token('refresh_token', 'trust-jwt', 'secret-1', audience => 'https://a.example',
                                          refresh_token => :'grant1'::jsonb ->> 'refresh_token')) ->> 'access_token') ->> 'aud' AS narrowed;

-- A retired key stops verifying when its publication ends, even in a backend whose key
-- cache was filled before.
SELECT oauth.auth_token('client_credentials', 'trust-jwt', 'secret-1') ->> 'access_token' AS old_key_token \gset
SELECT oauth.rotate_signing_key() IS NOT NULL AS rotated;
UPDATE oauth.signing_key SET expires_at = clock_timestamp() + interval '1 second' WHERE state = 'retired';
SELECT oauth.auth_verify(:'old_key_token') ->> 'sub' AS still_published;
SELECT pg_sleep(1.5);
SELECT oauth.auth_verify(:'old_key_token');

-- Introspection over HTTP: a client sees its own tokens; others' only with introspect_any.
CREATE ROLE trust_anon NOLOGIN;
CREATE ROLE trust_authenticator NOLOGIN;
CREATE SCHEMA trust_api;
SELECT oauth.create_http_endpoints('trust_api', 'trust_anon', 'trust_authenticator');
INSERT INTO oauth.client (id, secret) VALUES ('trust-rs', 'secret-rs');
SELECT oauth.auth_token('client_credentials', 'trust-opaque', 'secret-1') ->> 'access_token' AS tok \gset
SET request.method = 'POST';
SELECT trust_api.introspect(token => :'tok', client_id => 'trust-opaque', client_secret => 'secret-1') ->> 'active' AS own;
SELECT trust_api.introspect(token => :'tok', client_id => 'trust-rs', client_secret => 'secret-rs') AS other;
UPDATE oauth.client SET introspect_any = true WHERE id = 'trust-rs';
SELECT trust_api.introspect(token => :'tok', client_id => 'trust-rs', client_secret => 'secret-rs') ->> 'active' AS allowed;
RESET request.method;
-- SQL callers (a database role with EXECUTE) are not limited.
SELECT oauth.auth_introspect(:'tok') ->> 'active' AS from_sql;

-- Metadata: scopes_supported only as configured, never the clients' scopes.
SELECT oauth.auth_metadata() ? 'scopes_supported' AS lists_scopes;
SET pg_oauth.scopes_supported = 'read write';
SELECT oauth.auth_metadata() -> 'scopes_supported' AS scopes_supported;
RESET pg_oauth.scopes_supported;

-- Clean up (roles are cluster-wide; the endpoint roles stay, as in postgrest.sql).
DELETE FROM oauth.client WHERE id LIKE 'trust-%';
DROP ROLE trust_plain, trust_createrole, trust_bypassrls, trust_replication, trust_chained,
          trust_middle, trust_super, trust_files, trust_writer;
