-- The HTTP layer as PostgREST drives it: request settings in, response settings out.
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE ROLE regress_anon NOLOGIN;
CREATE ROLE regress_authenticator NOLOGIN;
CREATE SCHEMA regress_api;
SELECT oauth.create_http_endpoints('regress_api', 'regress_anon', 'regress_authenticator');
SELECT p.proname, p.pronargs, p.provolatile, p.prosecdef,
       has_function_privilege('regress_anon', p.oid, 'EXECUTE') AS anon_may_call,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call
  FROM pg_proc p WHERE p.pronamespace = 'regress_api'::regnamespace ORDER BY 1, 2;
SELECT count(*) AS keys_ready FROM oauth.signing_key WHERE state IN ('active', 'next');

INSERT INTO oauth.client (id, secret, scope) VALUES ('http-client', 'verysecret', '{read,write}');

-- Basic credentials (http-client:verysecret), a form with an unused registered parameter.
BEGIN;
SET LOCAL request.method = 'POST';
SET LOCAL request.headers = '{"authorization": "Basic aHR0cC1jbGllbnQ6dmVyeXNlY3JldA=="}';
SELECT regress_api.token(grant_type => 'client_credentials', scope => 'read', state => 'x') - 'access_token' AS body;
SELECT current_setting('response.status') AS status, current_setting('response.headers') AS headers;
COMMIT;

-- A wrong secret over Basic: 401 and a Basic challenge; the RFC 6749 error body.
BEGIN;
SET LOCAL request.method = 'POST';
SET LOCAL request.headers = '{"authorization": "Basic aHR0cC1jbGllbnQ6d3Jvbmc="}';
SELECT regress_api.token(grant_type => 'client_credentials') AS body;
SELECT current_setting('response.status') AS status, current_setting('response.headers') AS headers;
COMMIT;

-- Body credentials in a JSON body with members nobody registered: 400 on a wrong secret.
BEGIN;
SET LOCAL request.method = 'POST';
SELECT regress_api.token('{"grant_type": "client_credentials", "client_id": "http-client", "client_secret": "nope", "x": 1}'::jsonb) AS body;
SELECT current_setting('response.status') AS status;
SELECT regress_api.token('{"grant_type": "client_credentials", "client_id": "http-client", "client_secret": "verysecret", "x": 1}'::jsonb) ? 'access_token' AS issued;
COMMIT;

-- Both methods at once is an invalid request; GET is not allowed (405, with Allow).
BEGIN;
SET LOCAL request.method = 'POST';
SET LOCAL request.headers = '{"authorization": "Basic aHR0cC1jbGllbnQ6dmVyeXNlY3JldA=="}';
SELECT regress_api.token(grant_type => 'client_credentials', client_secret => 'verysecret') AS body;
SET LOCAL request.method = 'GET';
SELECT regress_api.token(grant_type => 'client_credentials') AS body;
SELECT current_setting('response.status') AS status, current_setting('response.headers') AS headers;
COMMIT;

-- Introspection and revocation need the client's credentials.
BEGIN;
SET LOCAL request.method = 'POST';
SELECT regress_api.token(grant_type => 'client_credentials', client_id => 'http-client', client_secret => 'verysecret') ->> 'access_token' AS tok \gset
SELECT regress_api.introspect(token => :'tok') AS anonymous;
SELECT regress_api.introspect(token => :'tok', client_id => 'http-client', client_secret => 'verysecret') - 'iat' - 'exp' - 'jti' AS introspected;
SELECT regress_api.revoke(token => :'tok', client_id => 'http-client', client_secret => 'verysecret') AS revoked;
SELECT regress_api.introspect(token => :'tok', client_id => 'http-client', client_secret => 'verysecret') AS after_revoke;
COMMIT;

-- Several audiences (RFC 8707): space-separated in one form field (PostgREST keeps only the
-- last of repeated fields), or a JSON array of `audience` or `resource` values.
UPDATE oauth.client SET audience = '{https://a.example,https://b.example,https://c.example}'
 WHERE id = 'http-client';
BEGIN;
SET LOCAL request.method = 'POST';
SELECT oauth.auth_introspect(regress_api.token(grant_type => 'client_credentials', client_id => 'http-client',
       client_secret => 'verysecret', audience => 'https://a.example https://c.example') ->> 'access_token') -> 'aud' AS form;
SELECT oauth.auth_introspect(regress_api.token(jsonb_build_object('grant_type', 'client_credentials',
       'client_id', 'http-client', 'client_secret', 'verysecret',
       'resource', jsonb_build_array('https://b.example', 'https://c.example'))) ->> 'access_token') -> 'aud' AS json_resource;
SELECT regress_api.token(jsonb_build_object('grant_type', 'client_credentials',
       'client_id', 'http-client', 'client_secret', 'verysecret',
       'audience', jsonb_build_array('https://a.example', 'https://elsewhere.example'))) AS not_allowed;
SELECT regress_api.token(jsonb_build_object('grant_type', 'client_credentials',
       'client_id', 'http-client', 'client_secret', 'verysecret',
       'audience', jsonb_build_array('https://a.example', 7))) AS not_strings;
COMMIT;
UPDATE oauth.client SET audience = '{}' WHERE id = 'http-client';

-- Claims helpers for row-level security, and the pre-request hook.
BEGIN;
SET LOCAL request.jwt.claims = '{"client_id": "http-client", "scope": "read write"}';
SELECT oauth.client_id(), oauth.has_scope('read') AS read, oauth.has_scope('admin') AS admin,
       oauth.has_any_scope('{admin,write}') AS any, oauth.has_all_scopes('{admin,write}') AS all;
-- The hook binds the verified claims to a session through the token the request carries:
-- claims with no token, or a token whose claims have no jti (a forged token: no session to
-- bind it to), or a jti of no session, are refused; no token and no claims is anonymous.
SAVEPOINT hook;
SELECT oauth.postgrest_pre_request();
ROLLBACK TO SAVEPOINT hook;
SET LOCAL request.headers = '{"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}';
SELECT oauth.postgrest_pre_request();
ROLLBACK TO SAVEPOINT hook;
SET LOCAL request.headers = '{"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}';
SET LOCAL request.jwt.claims = '{"jti": "01900000-0000-7000-8000-000000000000"}';
SELECT oauth.postgrest_pre_request();
ROLLBACK TO SAVEPOINT hook;
SET LOCAL request.jwt.claims = '{"role": "regress_anon"}';
SET LOCAL request.headers = '{}';
SELECT oauth.postgrest_pre_request() AS anonymous;
ROLLBACK;
SELECT oauth.claims() AS outside_a_request;

SET client_min_messages = warning;
DROP SCHEMA regress_api CASCADE;
REVOKE ALL ON FUNCTION oauth.postgrest_pre_config() FROM regress_authenticator;
DROP ROLE regress_anon, regress_authenticator;
RESET client_min_messages;
