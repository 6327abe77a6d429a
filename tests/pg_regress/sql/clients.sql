-- Managing clients and policies with plain SQL; constraints reject nonsense.
\set SHOW_CONTEXT never
-- (terse: the failing-row detail holds a random salt and timestamps)
\set VERBOSITY terse
INSERT INTO oauth.client (id, secret, grant_types) VALUES ('bad-grant', 's', '{password}');
INSERT INTO oauth.client (id, secret, token_format) VALUES ('bad-format', 's', 'saml');
INSERT INTO oauth.client (id, secret, access_token_expiration) VALUES ('bad-life', 's', -5);
INSERT INTO oauth.client (id, secret, refresh_token_expiration) VALUES ('bad-refresh', 's', 0);
INSERT INTO oauth.client (id, secret, type) VALUES ('bad-type', 's', 'spa');
INSERT INTO oauth.client (id, secret, scope) VALUES ('bad-scope', 's', '{"has space"}');
INSERT INTO oauth.client (id, secret, scope) VALUES ('bad-scope', 's', '{read,NULL}');
INSERT INTO oauth.client (id, secret, audience) VALUES ('bad-aud', 's', '{""}');
INSERT INTO oauth.client (id, secret) VALUES ('', 's');
INSERT INTO oauth.client (id, secret) VALUES (E'tab\tid', 's');
-- (a client id becomes the JWT sub: with a ':' it must be a URI)
INSERT INTO oauth.client (id, secret) VALUES ('svc:odd id', 's');
INSERT INTO oauth.client (id, secret, audience) VALUES ('bad-aud-uri', 's', '{"api:not a uri"}');
\set VERBOSITY default
INSERT INTO oauth.client (id, secret) VALUES ('empty-secret', '');

-- Defaults mirror Aidbox: client_credentials, opaque tokens, one hour.
INSERT INTO oauth.client (id, secret) VALUES ('defaults', 'verysecret');
SELECT grant_types, scope, audience, type, token_format, access_token_expiration,
       refresh_token, refresh_token_expiration, active
  FROM oauth.client WHERE id = 'defaults';

-- Importing an existing argon2 hash keeps it as is.
INSERT INTO oauth.client (id, secret)
VALUES ('imported', '$argon2id$v=19$m=19456,t=2,p=1$BM5VaxqGqSimc8sZ0BPx9g$dtRkbGchv3X43RZ2gLNVT2Yz/uhkpNLv8v53GBBSS8o');
SELECT secret FROM oauth.client WHERE id = 'imported';

-- A client id cannot change (its sessions and policy hang off it).
UPDATE oauth.client SET id = 'renamed' WHERE id = 'defaults';

-- create_client returns a generated secret once and stores its hash.
SELECT oauth.create_client('generated', '{read}') AS secret \gset
SELECT length(:'secret') AS secret_length, :'secret' ~ '^[A-Za-z0-9_-]+$' AS url_safe;
SELECT secret <> :'secret' AS stored_hashed FROM oauth.client WHERE id = 'generated';
SELECT oauth.auth_token('client_credentials', 'generated', :'secret') ->> 'scope' AS scope;

-- create_client sets every column an administrator may write (client_type is the column
-- type), each by name.
SELECT length(oauth.create_client('every-column', scope => '{read}',
    grant_types => '{client_credentials,refresh_token}', token_format => 'opaque',
    audience => '{https://api.example}', access_token_expiration => 600, refresh_token => true,
    client_type => 'smart-app', jwt_alg => 'ES256', refresh_token_expiration => 7200,
    jwks => '{"keys": []}', active => false, introspect_any => true)) > 40 AS created;
SELECT scope, grant_types, token_format, audience, access_token_expiration, refresh_token, type,
       jwt_alg, refresh_token_expiration, jwks, active, introspect_any
  FROM oauth.client WHERE id = 'every-column';
DELETE FROM oauth.client WHERE id = 'every-column';

-- Policies: the role must exist and must not be a superuser.
INSERT INTO oauth.policy (client_id, role) VALUES ('defaults', 'no_such_role');
INSERT INTO oauth.policy (client_id, role) VALUES ('defaults', current_user);
CREATE ROLE regress_api NOLOGIN;
INSERT INTO oauth.policy (client_id, role) VALUES ('defaults', 'regress_api');
SELECT oauth.auth_verify(oauth.auth_token('client_credentials', 'defaults', 'verysecret') ->> 'access_token') ->> 'role' AS role;

-- Deactivating a client revokes its sessions; deleting it removes its policy and keeps the
-- (revoked) sessions as history.
UPDATE oauth.client SET active = false WHERE id = 'defaults';
SELECT count(*) FILTER (WHERE revoked_at IS NULL) AS open, count(*) AS total
  FROM oauth.session WHERE client_id = 'defaults';
DELETE FROM oauth.client WHERE id = 'defaults';
SELECT (SELECT count(*) FROM oauth.session WHERE client_id = 'defaults') AS sessions,
       (SELECT count(*) FROM oauth.policy WHERE client_id = 'defaults') AS policies;
DROP ROLE regress_api;
