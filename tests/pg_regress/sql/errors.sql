-- Every OAuth error code, its message and its SQLSTATE.
\set VERBOSITY default
\set SHOW_CONTEXT never

INSERT INTO oauth.client (id, secret, scope) VALUES ('err-client', 'verysecret', '{read,write}');
INSERT INTO oauth.client (id, secret, grant_types) VALUES ('no-grant', 'verysecret', '{}');
INSERT INTO oauth.client (id, secret, active) VALUES ('inactive', 'verysecret', false);

-- invalid_client (28P01): wrong secret and unknown client read the same.
SELECT oauth.auth_token('client_credentials', 'err-client', 'wrong');
\echo :LAST_ERROR_SQLSTATE
SELECT oauth.auth_token('client_credentials', 'no-such-client', 'verysecret');
\echo :LAST_ERROR_SQLSTATE
SELECT oauth.auth_token('client_credentials', 'err-client', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT oauth.auth_token('client_credentials', 'inactive', 'verysecret');
\echo :LAST_ERROR_SQLSTATE

-- invalid_scope (42704)
SELECT oauth.auth_token('client_credentials', 'err-client', 'verysecret', 'admin');
\echo :LAST_ERROR_SQLSTATE
SELECT oauth.auth_token('client_credentials', 'err-client', 'verysecret', 'read "quoted"');
\echo :LAST_ERROR_SQLSTATE

-- unauthorized_client (42501)
SELECT oauth.auth_token('client_credentials', 'no-grant', 'verysecret');
\echo :LAST_ERROR_SQLSTATE

-- unsupported_grant_type (0A000)
SELECT oauth.auth_token('password', 'err-client', 'verysecret');
\echo :LAST_ERROR_SQLSTATE

-- invalid_request (22023)
SELECT oauth.auth_token(NULL, 'err-client', 'verysecret');
\echo :LAST_ERROR_SQLSTATE

-- invalid_target (42602)
SELECT oauth.auth_token('client_credentials', 'err-client', 'verysecret', NULL, 'https://elsewhere.example');
\echo :LAST_ERROR_SQLSTATE

-- invalid_grant (0LP01)
INSERT INTO oauth.client (id, secret, refresh_token) VALUES ('refresher', 'verysecret', true);
SELECT oauth.auth_token('refresh_token', 'refresher', 'verysecret', refresh_token => 'not-a-refresh-token');
\echo :LAST_ERROR_SQLSTATE

-- invalid_token (28000)
SELECT oauth.auth_verify('garbage');
\echo :LAST_ERROR_SQLSTATE
SELECT oauth.auth_verify(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT oauth.auth_verify(repeat('A', 64));
\echo :LAST_ERROR_SQLSTATE
