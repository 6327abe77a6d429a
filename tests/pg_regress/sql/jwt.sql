-- JWT access tokens, keys, refresh tokens, introspection and metadata as seen from SQL.
\set VERBOSITY default
\set SHOW_CONTEXT never

INSERT INTO oauth.client (id, secret, scope, token_format, refresh_token)
VALUES ('jwt-client', 'verysecret', '{read,write}', 'jwt', true);

-- JWTs need an issuer.
SELECT oauth.auth_token('client_credentials', 'jwt-client', 'verysecret');
\echo :LAST_ERROR_SQLSTATE
SELECT jsonb_pretty(oauth.auth_metadata()) AS metadata;

SET pg_oauth.issuer = 'https://issuer.example';

-- Keys exist as soon as a JWT client does (published before they sign): an active and a published next key.
SELECT count(*) AS keys FROM oauth.signing_key;
SELECT oauth.auth_token('client_credentials', 'jwt-client', 'verysecret', 'read') AS resp \gset
SELECT alg, state, length(kid) AS kid_length, public_jwk ?& '{kty,crv,x,y,kid,alg,use}' AS jwk_complete
  FROM oauth.signing_key ORDER BY state;
SELECT :'resp'::jsonb - 'access_token' - 'refresh_token' AS response,
       :'resp'::jsonb ? 'refresh_token' AS has_refresh_token;

-- The header and claims (RFC 9068).
SELECT convert_from(decode(rpad(translate(split_part(:'resp'::jsonb ->> 'access_token', '.', 1), '-_', '+/'),
                                 (length(split_part(:'resp'::jsonb ->> 'access_token', '.', 1)) + 3) / 4 * 4, '='),
                            'base64'), 'UTF8')::jsonb - 'kid' AS header;
SELECT oauth.auth_verify(:'resp'::jsonb ->> 'access_token') - 'iat' - 'exp' - 'jti' AS claims;

-- The JWK Set: public parts only.
SELECT jsonb_array_length(k -> 'keys') AS published,
       (SELECT bool_and(NOT (key ?| '{d,p,q,dp,dq,qi,k}')) FROM jsonb_array_elements(k -> 'keys') AS key) AS public_only
  FROM oauth.auth_jwks() AS k;

-- Rotation: next becomes active, active is retired but still published and accepted.
SELECT kid AS old_active FROM oauth.signing_key WHERE state = 'active' \gset
SELECT kid AS old_next FROM oauth.signing_key WHERE state = 'next' \gset
SELECT oauth.rotate_signing_key() = :'old_next' AS promoted_next;
SELECT state, expires_at > now() + interval '1 hour' AS published_until_tokens_expire
  FROM oauth.signing_key WHERE kid = :'old_active';
SELECT oauth.auth_verify(:'resp'::jsonb ->> 'access_token') ->> 'sub' AS still_valid;
SELECT oauth.rotate_signing_key('RS512');
\echo :LAST_ERROR_SQLSTATE

-- Refresh: rotation, and reuse revokes the family (invalid_grant, 0LP01).
SELECT oauth.auth_token('refresh_token', 'jwt-client', 'verysecret',
                        refresh_token => :'resp'::jsonb ->> 'refresh_token') AS resp2 \gset
SELECT :'resp2'::jsonb ->> 'refresh_token' <> :'resp'::jsonb ->> 'refresh_token' AS rotated;
SELECT oauth.auth_token('refresh_token', 'jwt-client', 'verysecret',
                        refresh_token => :'resp'::jsonb ->> 'refresh_token');
\echo :LAST_ERROR_SQLSTATE
SELECT oauth.auth_token('refresh_token', 'jwt-client', 'verysecret',
                        refresh_token => :'resp2'::jsonb ->> 'refresh_token');
SELECT oauth.auth_verify(:'resp2'::jsonb ->> 'access_token');
SELECT count(*) FILTER (WHERE revoked_at IS NULL) AS open_sessions FROM oauth.session
 WHERE client_id = 'jwt-client';

-- Introspection never raises for bad tokens.
SELECT oauth.auth_introspect('garbage') AS garbage,
       oauth.auth_introspect(:'resp2'::jsonb ->> 'access_token') AS revoked;
SELECT oauth.auth_token('client_credentials', 'jwt-client', 'verysecret') ->> 'access_token' AS live \gset
SELECT oauth.auth_introspect(:'live') - 'iat' - 'exp' - 'jti' AS live;

-- Metadata (RFC 8414).
SELECT jsonb_pretty(oauth.auth_metadata()) AS metadata;
RESET pg_oauth.issuer;
