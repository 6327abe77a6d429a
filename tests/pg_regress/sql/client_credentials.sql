-- The client credentials grant as a DBA and an application see it in psql.
\set VERBOSITY default
\set SHOW_CONTEXT never

INSERT INTO oauth.client (id, secret, grant_types, scope)
VALUES ('api-client', 'verysecret', '{client_credentials}', '{read,write}');

-- Secrets are stored only as argon2id PHC strings.
SELECT id, secret LIKE '$argon2id$v=19$m=19456,t=2,p=1$%' AS hashed, secret <> 'verysecret' AS not_plain
  FROM oauth.client WHERE id = 'api-client';

-- The positional call from the mission text.
SELECT oauth.auth_token('client_credentials', 'api-client', 'verysecret', 'read') AS resp \gset
SELECT :'resp'::jsonb - 'access_token' AS response,
       length(:'resp'::jsonb ->> 'access_token') AS token_length;

-- Named arguments, as PostgREST passes form fields.
SELECT oauth.auth_token(grant_type => 'client_credentials', client_id => 'api-client',
                        client_secret => 'verysecret') - 'access_token' AS named_call;

-- Verification returns the claims.
SELECT oauth.auth_verify(:'resp'::jsonb ->> 'access_token') - 'iat' - 'exp' - 'jti' AS claims;
SELECT (c ->> 'exp')::bigint - (c ->> 'iat')::bigint AS lifetime,
       c ->> 'jti' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$' AS jti_is_uuidv7
  FROM oauth.auth_verify(:'resp'::jsonb ->> 'access_token') AS c;

-- The session holds the claims and only a SHA-256 of the token.
SELECT client_id, format, scope, audience, role, revoked_at IS NULL AS open,
       expires_at - issued_at AS lifetime, length(token_hash) AS hash_bytes,
       token_hash = sha256(convert_to(:'resp'::jsonb ->> 'access_token', 'UTF8')) AS hash_matches
  FROM oauth.session WHERE id = (oauth.auth_verify(:'resp'::jsonb ->> 'access_token') ->> 'jti')::uuid;

-- Revocation: a DBA closes the session with UPDATE; verification then fails.
UPDATE oauth.session SET revoked_at = now() WHERE client_id = 'api-client';
SELECT oauth.auth_verify(:'resp'::jsonb ->> 'access_token');
\echo :LAST_ERROR_SQLSTATE

-- auth_revoke is idempotent and ignores unknown tokens.
SELECT oauth.auth_token('client_credentials', 'api-client', 'verysecret') ->> 'access_token' AS tok \gset
SELECT oauth.auth_revoke(:'tok') AS first, oauth.auth_revoke(:'tok') AS second,
       oauth.auth_revoke('not-a-token') AS unknown;
SELECT oauth.auth_verify(:'tok');

-- Deleting the session also ends the token.
SELECT oauth.auth_token('client_credentials', 'api-client', 'verysecret') ->> 'access_token' AS tok \gset
DELETE FROM oauth.session WHERE id = (oauth.auth_verify(:'tok') ->> 'jti')::uuid;
SELECT oauth.auth_verify(:'tok');
