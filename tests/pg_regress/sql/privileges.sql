-- What each role may do.
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE ROLE regress_admin LOGIN IN ROLE oauth_admin;
CREATE ROLE regress_app LOGIN IN ROLE oauth_app;
CREATE ROLE regress_nobody LOGIN;

INSERT INTO oauth.client (id, secret, scope) VALUES ('priv-client', 'verysecret', '{read}');

SET ROLE regress_admin;
-- The admin manages clients but cannot read secret hashes.
INSERT INTO oauth.client (id, secret, scope) VALUES ('admin-made', 'adminsecret', '{read}');
UPDATE oauth.client SET scope = '{read,write}' WHERE id = 'admin-made';
UPDATE oauth.client SET secret = 'rotated' WHERE id = 'admin-made';
SELECT id, scope FROM oauth.client WHERE id = 'admin-made';
SELECT secret FROM oauth.client WHERE id = 'admin-made';
SELECT * FROM oauth.client;
SELECT count(*) >= 0 AS can_list_sessions FROM oauth.session;
SELECT count(*) >= 0 AS can_list_keys FROM (SELECT kid, alg, state FROM oauth.signing_key) k;
SELECT private_key FROM oauth.signing_key;
RESET ROLE;

SET ROLE regress_app;
-- The application calls the functions but cannot touch the tables.
SELECT oauth.auth_token('client_credentials', 'admin-made', 'rotated') ->> 'token_type' AS token_type;
SELECT oauth.auth_verify(oauth.auth_token('client_credentials', 'priv-client', 'verysecret') ->> 'access_token') ->> 'client_id' AS client_id;
SELECT id FROM oauth.client;
SELECT count(*) FROM oauth.session;
INSERT INTO oauth.client (id, secret) VALUES ('app-made', 'x');
SELECT oauth.create_client('app-made');
SELECT oauth.rotate_signing_key();
SELECT kid FROM oauth.signing_key;
SELECT jsonb_typeof(oauth.auth_jwks()) AS jwks, oauth.auth_introspect('x') AS introspect;
RESET ROLE;

SET ROLE regress_admin;
-- The admin revokes tokens but cannot erase the issuance history: deleting a client revokes
-- its tokens and keeps them (oauth.purge_expired removes them in time).
DELETE FROM oauth.session WHERE client_id = 'admin-made';
DELETE FROM oauth.refresh_family WHERE client_id = 'admin-made';
DELETE FROM oauth.client WHERE id = 'admin-made';
SELECT count(*) AS kept, count(*) FILTER (WHERE revoked_reason = 'client deleted') AS revoked
  FROM oauth.session WHERE client_id = 'admin-made';
RESET ROLE;

SET ROLE regress_nobody;
-- An unrelated role gets nothing.
SELECT oauth.auth_token('client_credentials', 'priv-client', 'verysecret');
SELECT id FROM oauth.client;
RESET ROLE;

DROP ROLE regress_admin, regress_app, regress_nobody;
