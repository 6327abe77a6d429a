-- pg_oauth 0.1.0 -> 0.2.0. Released with 0.2.0: frozen, like sql/released/pg_oauth--0.2.0.sql.
\echo Use "ALTER EXTENSION pg_oauth UPDATE" to load this file. \quit

-- Introspection over HTTP shows a client only its own tokens unless it is allowed more.
ALTER TABLE oauth.client ADD COLUMN introspect_any boolean NOT NULL DEFAULT false;
GRANT SELECT (introspect_any), INSERT (introspect_any), UPDATE (introspect_any)
    ON oauth.client TO oauth_admin;

-- The one rule for policy roles (src/store/policy.rs), on policy writes and at every issuance;
-- it now also refuses CREATEROLE, BYPASSRLS, REPLICATION and members of privileged roles.
CREATE FUNCTION oauth.policy_role_problem(role_name text) RETURNS text
STRICT STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'policy_role_problem_wrapper';

CREATE OR REPLACE FUNCTION oauth.policy_check_role() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text := oauth.policy_role_problem(NEW.role);
BEGIN
    IF problem IS NULL THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = NEW.role) THEN
        RAISE EXCEPTION '%', problem
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create the role first (CREATE ROLE ... NOLOGIN) and, for PostgREST, grant it to the authenticator role.';
    END IF;
    RAISE EXCEPTION '%; tokens must not act as a privileged role', problem
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Use a NOLOGIN role with only the table privileges the client needs.';
END
$$;

REVOKE ALL ON FUNCTION oauth.policy_role_problem(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oauth.policy_role_problem(text) TO oauth_admin;

-- Keys are published before they sign: a client that may get JWTs makes sure its
-- algorithm's active and next keys exist when it is written, so they reach verifiers
-- (PostgREST reloads through NOTIFY at commit) before its first token.
CREATE FUNCTION oauth.client_ensure_signing_keys() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM oauth.ensure_signing_keys(NEW.jwt_alg);
    RETURN NULL;
END
$$;

CREATE TRIGGER client_jwt_keys
    AFTER INSERT OR UPDATE OF token_format, jwt_alg ON oauth.client
    FOR EACH ROW WHEN (NEW.token_format = 'jwt')
    EXECUTE FUNCTION oauth.client_ensure_signing_keys();
REVOKE ALL ON FUNCTION oauth.client_ensure_signing_keys() FROM PUBLIC;

-- SMART App Launch 2.x configuration, from SQL and (GET /rpc/smart_configuration) over HTTP.
CREATE FUNCTION oauth."auth_smart_configuration"() RETURNS jsonb
STRICT STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'auth_smart_configuration_wrapper';
CREATE FUNCTION oauth."http_smart_configuration"() RETURNS jsonb
STRICT STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'http_smart_configuration_wrapper';
REVOKE ALL ON FUNCTION oauth.auth_smart_configuration(), oauth.http_smart_configuration() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oauth.auth_smart_configuration() TO oauth_app;

-- create_http_endpoints also creates GET /rpc/smart_configuration (run it again to get it).
CREATE OR REPLACE FUNCTION oauth.create_http_endpoints(
    api_schema name DEFAULT 'api',
    anon_role name DEFAULT 'anon',
    authenticator_role name DEFAULT 'authenticator'
) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    names text[] := oauth.http_parameter_names();
    args text;
    pairs text;
    endpoint text;
BEGIN
    SELECT string_agg(format('%I text DEFAULT NULL', n), ', ' ORDER BY i),
           string_agg(format('%L, %I', n, n), ', ' ORDER BY i)
      INTO args, pairs
      FROM unnest(names) WITH ORDINALITY AS t(n, i);
    FOREACH endpoint IN ARRAY ARRAY['token', 'revoke', 'introspect'] LOOP
        -- plpgsql, not sql: a SECURITY DEFINER sql function cannot be inlined, and on
        -- PostgreSQL < 18 it is parsed and planned again on every call (a third of the token
        -- endpoint's time through PostgREST); plpgsql keeps the plan per connection.
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION %I.%I(%s) RETURNS jsonb LANGUAGE plpgsql VOLATILE
               SECURITY DEFINER SET search_path = pg_catalog, pg_temp
             AS %L',
            api_schema, endpoint, args,
            format('BEGIN RETURN oauth.%I(jsonb_strip_nulls(jsonb_build_object(%s))); END',
                   'http_' || endpoint, pairs));
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION %I.%I(jsonb) RETURNS jsonb LANGUAGE plpgsql VOLATILE
               SECURITY DEFINER SET search_path = pg_catalog, pg_temp
             AS %L',
            api_schema, endpoint, format('BEGIN RETURN oauth.%I($1); END', 'http_' || endpoint));
        EXECUTE format('REVOKE ALL ON FUNCTION %I.%I(%s) FROM PUBLIC', api_schema, endpoint,
                       array_to_string(array_fill('text'::text, ARRAY[cardinality(names)]), ', '));
        EXECUTE format('REVOKE ALL ON FUNCTION %I.%I(jsonb) FROM PUBLIC', api_schema, endpoint);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %I.%I(%s) TO %I', api_schema, endpoint,
                       array_to_string(array_fill('text'::text, ARRAY[cardinality(names)]), ', '), anon_role);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %I.%I(jsonb) TO %I', api_schema, endpoint, anon_role);
    END LOOP;
    FOREACH endpoint IN ARRAY ARRAY['jwks', 'metadata', 'smart_configuration'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION %I.%I() RETURNS jsonb LANGUAGE plpgsql STABLE
               SECURITY DEFINER SET search_path = pg_catalog, pg_temp
             AS %L',
            api_schema, endpoint, format('BEGIN RETURN oauth.%I(); END', 'http_' || endpoint));
        EXECUTE format('REVOKE ALL ON FUNCTION %I.%I() FROM PUBLIC', api_schema, endpoint);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %I.%I() TO %I', api_schema, endpoint, anon_role);
    END LOOP;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', api_schema, anon_role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION oauth.postgrest_pre_config() TO %I', authenticator_role);
    -- Keys for the default algorithm exist before the first token, so PostgREST starts
    -- with them (keys made on first use reach it a moment later, through NOTIFY).
    PERFORM oauth.ensure_signing_keys();
    NOTIFY pgrst, 'reload schema';
END
$$;

-- purge_expired refuses a retention below pg_oauth.audit_min_retention.
CREATE FUNCTION oauth."audit_min_retention_secs"() RETURNS INT
STRICT STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_min_retention_secs_wrapper';
REVOKE ALL ON FUNCTION oauth.audit_min_retention_secs() FROM PUBLIC;
CREATE OR REPLACE FUNCTION oauth.purge_expired(max_rows integer DEFAULT 10000,
                                    retention interval DEFAULT '7 days')
RETURNS TABLE (relation text, deleted bigint)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    budget bigint := max_rows;
    cutoff timestamptz := now() - retention;
    n bigint;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'invalid_request: max_rows must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retention IS NULL OR retention < interval '0' THEN
        RAISE EXCEPTION 'invalid_request: retention must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The audit trail cannot be purged younger than the superuser's floor.
    IF retention < pg_catalog.make_interval(secs => oauth.audit_min_retention_secs()) THEN
        RAISE EXCEPTION 'invalid_request: retention must be at least % (pg_oauth.audit_min_retention)',
                        pg_catalog.justify_hours(pg_catalog.make_interval(secs => oauth.audit_min_retention_secs()))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    DELETE FROM oauth.session
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM oauth.session
                              WHERE expires_at < cutoff LIMIT budget));
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'session'; deleted := n; RETURN NEXT;
    budget := budget - n;

    DELETE FROM oauth.refresh_token
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM oauth.refresh_token
                              WHERE expires_at < cutoff LIMIT budget));
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'refresh_token'; deleted := n; RETURN NEXT;
    budget := budget - n;

    -- A grant is done when none of its refresh tokens and access tokens is left.
    DELETE FROM oauth.refresh_family f
     WHERE f.id = ANY (ARRAY(
            SELECT f2.id FROM oauth.refresh_family f2
             WHERE f2.created_at < cutoff
               AND NOT EXISTS (SELECT FROM oauth.refresh_token t WHERE t.family_id = f2.id)
               AND NOT EXISTS (SELECT FROM oauth.session s WHERE s.family_id = f2.id)
             LIMIT budget));
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'refresh_family'; deleted := n; RETURN NEXT;
    budget := budget - n;

    DELETE FROM oauth.client_assertion_jti
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM oauth.client_assertion_jti
                              WHERE expires_at < now() ORDER BY expires_at LIMIT budget));
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'client_assertion_jti'; deleted := n; RETURN NEXT;
    budget := budget - n;

    DELETE FROM oauth.auth_failure
     WHERE id = ANY (ARRAY(SELECT id FROM oauth.auth_failure
                            WHERE at < cutoff ORDER BY id LIMIT budget));
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'auth_failure'; deleted := n; RETURN NEXT;
    budget := budget - n;

    DELETE FROM oauth.source_throttle
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM oauth.source_throttle
                              WHERE last_at < cutoff LIMIT budget));
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'source_throttle'; deleted := n; RETURN NEXT;
    budget := budget - n;

    -- Lockout rows whose lockout and counting window are both over count for nothing.
    DELETE FROM oauth.client_lockout
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM oauth.client_lockout
                              WHERE coalesce(locked_until, '-infinity') < now()
                                AND window_start < now() - interval '1 day'
                              LIMIT budget));
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'client_lockout'; deleted := n; RETURN NEXT;
END
$$;

-- oauth.request_token_problem is no longer executable by PUBLIC: the pre-request hook that
-- every PostgREST role runs calls it with the owner's rights.
CREATE OR REPLACE FUNCTION oauth.postgrest_pre_request() RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text := oauth.request_token_problem();
BEGIN
    IF problem IS NOT NULL THEN
        RAISE SQLSTATE 'PGRST'
            USING MESSAGE = json_build_object('code', 'invalid_token', 'message', problem)::text,
                  DETAIL = json_build_object('status', 401, 'headers', json_build_object(
                      'WWW-Authenticate', format('Bearer error="invalid_token", error_description="%s"', problem),
                      'Cache-Control', 'no-store'))::text;
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION oauth.request_token_problem() FROM PUBLIC;

-- Deferred audit writes (a failure recorded although its request failed) that could not
-- be carried out, e.g. with no background worker slot: counted, never lost silently.
CREATE SEQUENCE oauth.audit_dropped_seq;
CREATE FUNCTION oauth.audit_dropped_events() RETURNS bigint
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM oauth.audit_dropped_seq $$;

REVOKE ALL ON FUNCTION oauth.audit_dropped_events() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oauth.audit_dropped_events() TO oauth_admin;

-- Requests refused per throttled source and window, in the audit trail.
-- Requests refused because their source had too many failed authentications in its window
-- (pg_oauth.source_failure_limit): one row per source and window, however many ids the
-- source tried, so a flood of invented client ids adds O(1) rows. `refused` is written at
-- the 1st, 2nd, 4th, 8th ... refusal: at least half the true count.
CREATE TABLE oauth.source_throttle (
    source        text NOT NULL,
    window_start  timestamptz NOT NULL,
    first_at      timestamptz NOT NULL DEFAULT now(),
    last_at       timestamptz NOT NULL DEFAULT now(),
    refused       bigint NOT NULL,
    PRIMARY KEY (source, window_start)
);


GRANT SELECT ON oauth.source_throttle TO oauth_admin;

CREATE OR REPLACE VIEW oauth.audit_event AS
    SELECT s.issued_at AS at, 'token issued'::text AS event, s.client_id, s.id AS session_id,
           jsonb_build_object('format', s.format, 'scope', s.scope, 'audience', s.audience,
                              'role', s.role, 'expires_at', s.expires_at,
                              'refresh_grant', s.family_id) AS detail
      FROM oauth.session s
    UNION ALL
    SELECT s.revoked_at, 'token revoked', s.client_id, s.id,
           jsonb_build_object('reason', s.revoked_reason)
      FROM oauth.session s
     WHERE s.revoked_at IS NOT NULL
    UNION ALL
    SELECT f.revoked_at, 'refresh grant revoked', f.client_id, NULL,
           jsonb_build_object('refresh_grant', f.id, 'reason', f.revoked_reason)
      FROM oauth.refresh_family f
     WHERE f.revoked_at IS NOT NULL
    UNION ALL
    SELECT a.at, 'authentication failed', a.client_id, NULL,
           jsonb_build_object('source', a.source, 'reason', a.reason)
      FROM oauth.auth_failure a
    UNION ALL
    SELECT t.first_at, 'source throttled', NULL, NULL,
           jsonb_build_object('source', t.source, 'window_start', t.window_start,
                              'refused', t.refused, 'last_at', t.last_at)
      FROM oauth.source_throttle t;


-- create_client takes one argument per column an administrator may write.
DROP FUNCTION oauth.create_client(text, text[], text[], text, text[], integer, boolean, text);
CREATE FUNCTION oauth."create_client"(
	"id" TEXT,
	"scope" TEXT[] DEFAULT '{}',
	"grant_types" TEXT[] DEFAULT '{client_credentials}',
	"token_format" TEXT DEFAULT 'opaque',
	"audience" TEXT[] DEFAULT '{}',
	"access_token_expiration" INT DEFAULT 3600,
	"refresh_token" bool DEFAULT false,
	"client_type" TEXT DEFAULT NULL,
	"jwt_alg" TEXT DEFAULT NULL,
	"refresh_token_expiration" INT DEFAULT 86400,
	"jwks" jsonb DEFAULT NULL,
	"active" bool DEFAULT true,
	"introspect_any" bool DEFAULT false
) RETURNS TEXT
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_client_wrapper';
REVOKE ALL ON FUNCTION oauth.create_client FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oauth.create_client TO oauth_admin;

-- Descriptions: every function, table, view, sequence and column of schema oauth (\df+,
-- \d+ and \dv+ explain them). Functions marked "Internal" are called by pg_oauth itself
-- (triggers, constraints, the generated HTTP endpoints); callers should not use them.
-- The same block ends the upgrade scripts; the upgrade test compares descriptions.

COMMENT ON FUNCTION oauth.auth_token IS
    'Token endpoint (RFC 6749 §4.4 client_credentials, §6 refresh_token): authenticates the client by secret or client_assertion (RFC 7523) and returns the §5.1 JSON response; errors raise with the OAuth error code first in the message.';
COMMENT ON FUNCTION oauth.auth_verify(text) IS
    'Verify an access token (opaque or JWT): its claims as jsonb, or an invalid_token error (expired, revoked, unknown, bad signature).';
COMMENT ON FUNCTION oauth.auth_verify(text, text) IS
    'Verify an access token as auth_verify(token) does, and require audience to be in its aud (RFC 8707).';
COMMENT ON FUNCTION oauth.auth_revoke IS
    'Revoke an access or refresh token (RFC 7009 semantics from SQL): true if a live token was revoked; unknown tokens are not an error.';
COMMENT ON FUNCTION oauth.auth_introspect IS
    'Token introspection (RFC 7662): the token''s claims with active = true, or {"active": false}; never raises for a bad token.';
COMMENT ON FUNCTION oauth.auth_jwks IS
    'The public JWK Set (RFC 7517) of the signing keys that are published: next, active and retired until they expire.';
COMMENT ON FUNCTION oauth.auth_metadata IS
    'Authorization server metadata (RFC 8414) for this database; needs pg_oauth.issuer.';
COMMENT ON FUNCTION oauth.auth_smart_configuration IS
    'SMART App Launch 2.x configuration (.well-known/smart-configuration) for this database; needs pg_oauth.issuer.';
COMMENT ON FUNCTION oauth.create_client IS
    'Register a client with a generated secret and return the secret (shown once; only its argon2id hash is stored). One argument per column an administrator may write; client_type is the column type.';
COMMENT ON FUNCTION oauth.rotate_client_secret IS
    'Replace a client''s secret with a generated one and return it (once); the previous secret keeps working for grace (default 1 hour).';
COMMENT ON FUNCTION oauth.ensure_signing_keys IS
    'Make sure the algorithm (default pg_oauth.default_jwt_alg) has an active and a next signing key; returns the active kid.';
COMMENT ON FUNCTION oauth.rotate_signing_key IS
    'Rotate one algorithm''s keys: next becomes active, active is retired (published until its tokens expire), a new next is made; returns the new active kid.';
COMMENT ON FUNCTION oauth.purge_expired IS
    'Delete expired sessions, refresh tokens and families, assertion jtis, old failures, throttle and lockout rows: at most max_rows per call, keeping retention (at least pg_oauth.audit_min_retention) of audit trail.';
COMMENT ON FUNCTION oauth.audit_dropped_events IS
    'How many deferred audit writes (failed authentications, refresh family revocations of failed requests) could not be carried out since installation; see the server log for each.';
COMMENT ON FUNCTION oauth.policy_role_problem IS
    'Why a role may not be a policy role (tokens act as it), or NULL: missing, privileged, or a member of a privileged role.';
COMMENT ON FUNCTION oauth.create_http_endpoints IS
    'Create the PostgREST endpoints token, revoke, introspect, jwks, metadata and smart_configuration in api_schema for anon_role, and let authenticator_role run postgrest_pre_config. Run as the owner of pg_oauth.';
COMMENT ON FUNCTION oauth.postgrest_pre_config IS
    'PostgREST db-pre-config: sets PostgREST''s jwt-secret to the published JWK Set (plus HS256 secrets while HS256 is in use). Executable by the authenticator role only.';
COMMENT ON FUNCTION oauth.postgrest_pre_request IS
    'PostgREST db-pre-request: answers 401 with an RFC 6750 challenge when the request''s token was revoked, deleted or was not issued here.';
COMMENT ON FUNCTION oauth.claims IS
    'The current PostgREST request''s JWT claims (request.jwt.claims), for row-level security policies; {} outside a request.';
COMMENT ON FUNCTION oauth.client_id IS
    'The client_id claim of the current PostgREST request''s token, for row-level security policies; NULL outside a request.';
COMMENT ON FUNCTION oauth.has_scope IS
    'Whether the current PostgREST request''s token grants scope (SMART wildcards and permission letters understood), for row-level security policies.';
COMMENT ON FUNCTION oauth.has_any_scope IS
    'Whether the current PostgREST request''s token grants at least one of scopes, for row-level security policies.';
COMMENT ON FUNCTION oauth.has_all_scopes IS
    'Whether the current PostgREST request''s token grants every one of scopes, for row-level security policies.';
COMMENT ON FUNCTION oauth.http_token IS
    'Internal: the token endpoint behind the generated PostgREST function token (RFC 6749 status codes, headers and error bodies); params are the form fields.';
COMMENT ON FUNCTION oauth.http_revoke IS
    'Internal: the revocation endpoint (RFC 7009) behind the generated PostgREST function revoke; params are the form fields.';
COMMENT ON FUNCTION oauth.http_introspect IS
    'Internal: the introspection endpoint (RFC 7662) behind the generated PostgREST function introspect; params are the form fields.';
COMMENT ON FUNCTION oauth.http_jwks IS
    'Internal: the JWK Set behind the generated PostgREST function jwks, with caching headers.';
COMMENT ON FUNCTION oauth.http_metadata IS
    'Internal: RFC 8414 metadata behind the generated PostgREST function metadata, with caching headers.';
COMMENT ON FUNCTION oauth.http_smart_configuration IS
    'Internal: the SMART configuration behind the generated PostgREST function smart_configuration, with caching headers.';
COMMENT ON FUNCTION oauth.http_parameter_names IS
    'Internal (create_http_endpoints): the OAuth parameters the generated endpoints accept as form fields.';
COMMENT ON FUNCTION oauth.request_token_problem IS
    'Internal (postgrest_pre_request): why the current request''s token may not be used, or NULL.';
COMMENT ON FUNCTION oauth.audit_min_retention_secs IS
    'Internal (oauth.purge_expired): pg_oauth.audit_min_retention in seconds.';
COMMENT ON FUNCTION oauth.is_string_or_uri IS
    'Internal (check constraints): whether value is an RFC 7519 StringOrURI (no '':'' unless it is a URI).';
COMMENT ON FUNCTION oauth.are_strings_or_uris IS
    'Internal (check constraints): whether every item is an RFC 7519 StringOrURI.';
COMMENT ON FUNCTION oauth.client_before_write IS
    'Internal (trigger on oauth.client): replaces a plaintext secret by its argon2id hash before it is stored; checks imported hashes.';
COMMENT ON FUNCTION oauth.client_close_sessions IS
    'Internal (trigger on oauth.client): deactivating a client revokes its sessions and refresh grants; deleting it deletes them.';
COMMENT ON FUNCTION oauth.client_ensure_signing_keys IS
    'Internal (trigger on oauth.client): a client that gets JWTs makes its algorithm''s keys exist, so they are published before they sign.';
COMMENT ON FUNCTION oauth.refresh_family_revoked IS
    'Internal (trigger on oauth.refresh_family): revoking a refresh grant revokes every access token issued from it.';
COMMENT ON FUNCTION oauth.revocation_reason IS
    'Internal (trigger on oauth.session and oauth.refresh_family): a revocation without a reason records who made it.';
COMMENT ON FUNCTION oauth.policy_check_role IS
    'Internal (trigger on oauth.policy): refuses a policy whose role tokens may not act as (see policy_role_problem).';
COMMENT ON FUNCTION oauth.invalidate_caches IS
    'Internal (statement triggers): a change to clients, policies, signing keys or lockouts invalidates every backend''s caches when it commits.';

COMMENT ON TABLE oauth.client IS
    'OAuth clients. Write the secret in plaintext; a trigger stores only its argon2id hash.';
COMMENT ON COLUMN oauth.client.id IS 'The client_id: 1 to 255 characters, an RFC 7519 StringOrURI (it becomes the JWT sub).';
COMMENT ON COLUMN oauth.client.secret IS
    'argon2id PHC string of the client secret (plaintext written here is hashed by a trigger).';
COMMENT ON COLUMN oauth.client.previous_secret IS 'argon2id hash of the secret before rotate_client_secret, accepted until previous_secret_expires_at.';
COMMENT ON COLUMN oauth.client.previous_secret_expires_at IS 'End of the rotation grace period of previous_secret.';
COMMENT ON COLUMN oauth.client.grant_types IS 'Grants the client may use: client_credentials, refresh_token.';
COMMENT ON COLUMN oauth.client.scope IS 'Scopes the client may request; also the default grant.';
COMMENT ON COLUMN oauth.client.audience IS 'Audiences (aud) the client may request.';
COMMENT ON COLUMN oauth.client.type IS 'NULL, or smart-app: SMART on FHIR scope rules and SMART Backend Services assertion limits apply.';
COMMENT ON COLUMN oauth.client.token_format IS 'opaque (default) or jwt.';
COMMENT ON COLUMN oauth.client.jwt_alg IS 'Signing algorithm of this client''s JWTs (ES256, EdDSA, RS256, PS256, HS256); NULL: pg_oauth.default_jwt_alg.';
COMMENT ON COLUMN oauth.client.access_token_expiration IS 'Access token lifetime in seconds.';
COMMENT ON COLUMN oauth.client.refresh_token IS 'Whether refresh tokens are issued (and the refresh_token grant allowed).';
COMMENT ON COLUMN oauth.client.refresh_token_expiration IS 'Refresh token lifetime in seconds, from issue or last use.';
COMMENT ON COLUMN oauth.client.jwks IS 'The client''s public keys for private_key_jwt (a JWK Set, by value; private members are refused).';
COMMENT ON COLUMN oauth.client.active IS 'false: the client cannot authenticate, and its tokens were revoked when it was deactivated.';
COMMENT ON COLUMN oauth.client.created_at IS 'When the client was registered.';
COMMENT ON COLUMN oauth.client.updated_at IS 'When the client row was last written.';
COMMENT ON COLUMN oauth.client.introspect_any IS
    'Whether this client (a resource server) may introspect tokens issued to other clients over HTTP; others see only their own.';

COMMENT ON TABLE oauth.policy IS
    'Access policies: the database role (PostgREST role claim) a client''s tokens act as.';
COMMENT ON COLUMN oauth.policy.client_id IS 'The client (deleted with it).';
COMMENT ON COLUMN oauth.policy.role IS 'The role its tokens act as: must exist, not be privileged nor a member of a privileged role.';
COMMENT ON COLUMN oauth.policy.created_at IS 'When the policy was written.';

COMMENT ON TABLE oauth.session IS
    'Issued access tokens (id = jti). Revoke with UPDATE ... SET revoked_at = now() or DELETE.';
COMMENT ON COLUMN oauth.session.id IS 'The token''s id (UUIDv7; the JWT jti, and inside an opaque token).';
COMMENT ON COLUMN oauth.session.client_id IS 'The client it was issued to.';
COMMENT ON COLUMN oauth.session.token_hash IS 'SHA-256 of the access token; the token itself is never stored.';
COMMENT ON COLUMN oauth.session.format IS 'opaque or jwt.';
COMMENT ON COLUMN oauth.session.scope IS 'Scopes granted.';
COMMENT ON COLUMN oauth.session.audience IS 'Audiences (aud) granted.';
COMMENT ON COLUMN oauth.session.role IS 'The policy role the token acts as, if any.';
COMMENT ON COLUMN oauth.session.issued_at IS 'When it was issued.';
COMMENT ON COLUMN oauth.session.expires_at IS 'When it expires.';
COMMENT ON COLUMN oauth.session.revoked_at IS 'When it was revoked; NULL while live.';
COMMENT ON COLUMN oauth.session.family_id IS 'The refresh grant it was issued from, if any (revoking the grant revokes it).';
COMMENT ON COLUMN oauth.session.revoked_reason IS 'Who or what revoked it: the client, reuse detection, deactivation, or the role that updated revoked_at.';

COMMENT ON TABLE oauth.signing_key IS
    'JWT signing keys. Rotate with oauth.rotate_signing_key(); private keys are readable by the owner only.';
COMMENT ON COLUMN oauth.signing_key.kid IS 'Key id: the RFC 7638 thumbprint of the public key (random for HS256).';
COMMENT ON COLUMN oauth.signing_key.alg IS 'ES256, EdDSA, RS256, PS256 or HS256.';
COMMENT ON COLUMN oauth.signing_key.private_key IS 'PKCS#8 DER private key (HS256: the 256-bit secret). Owner only.';
COMMENT ON COLUMN oauth.signing_key.public_jwk IS 'The public JWK as published (NULL for HS256).';
COMMENT ON COLUMN oauth.signing_key.state IS 'next (published, not yet signing), active (signs) or retired (published until expires_at).';
COMMENT ON COLUMN oauth.signing_key.created_at IS 'When the key was made.';
COMMENT ON COLUMN oauth.signing_key.activated_at IS 'When it started signing.';
COMMENT ON COLUMN oauth.signing_key.retired_at IS 'When it stopped signing.';
COMMENT ON COLUMN oauth.signing_key.expires_at IS 'When every token it signed has expired: it is no longer published or accepted.';

COMMENT ON TABLE oauth.refresh_family IS
    'Refresh token families (one per grant). Revoke with UPDATE ... SET revoked_at = now().';
COMMENT ON COLUMN oauth.refresh_family.id IS 'The grant''s id (UUIDv7).';
COMMENT ON COLUMN oauth.refresh_family.client_id IS 'The client it was granted to.';
COMMENT ON COLUMN oauth.refresh_family.created_at IS 'When the grant was made.';
COMMENT ON COLUMN oauth.refresh_family.revoked_at IS 'When it was revoked (with its access tokens); NULL while live.';
COMMENT ON COLUMN oauth.refresh_family.revoked_reason IS 'Why: reuse of a spent token, the client, deactivation, or the role that revoked it.';

COMMENT ON TABLE oauth.refresh_token IS
    'Refresh tokens (SHA-256 only). used_at is set when a token is exchanged for its successor.';
COMMENT ON COLUMN oauth.refresh_token.id IS 'The token''s id (UUIDv7).';
COMMENT ON COLUMN oauth.refresh_token.family_id IS 'Its grant.';
COMMENT ON COLUMN oauth.refresh_token.client_id IS 'The client it was issued to.';
COMMENT ON COLUMN oauth.refresh_token.token_hash IS 'SHA-256 of the refresh token; the token itself is never stored.';
COMMENT ON COLUMN oauth.refresh_token.scope IS 'Scopes of the grant (a refresh may narrow them).';
COMMENT ON COLUMN oauth.refresh_token.audience IS 'Audiences of the grant (a refresh may narrow them).';
COMMENT ON COLUMN oauth.refresh_token.issued_at IS 'When it was issued.';
COMMENT ON COLUMN oauth.refresh_token.expires_at IS 'When it expires.';
COMMENT ON COLUMN oauth.refresh_token.used_at IS 'When it was exchanged; using it again revokes its grant.';

COMMENT ON TABLE oauth.fhir_resource_type IS
    'Resource types SMART wildcard scopes expand to; seeded with the FHIR R4 (4.0.1) resource types.';
COMMENT ON COLUMN oauth.fhir_resource_type.name IS 'A FHIR resource type name, e.g. Patient.';

COMMENT ON TABLE oauth.client_assertion_jti IS
    'jti values of client assertions already used (RFC 7523 §3: no replay while they could be accepted).';
COMMENT ON COLUMN oauth.client_assertion_jti.client_id IS 'The assertion''s issuer (the client).';
COMMENT ON COLUMN oauth.client_assertion_jti.jti IS 'The assertion''s jti.';
COMMENT ON COLUMN oauth.client_assertion_jti.expires_at IS 'Until when the assertion could be accepted (exp plus leeway); purged after.';

COMMENT ON TABLE oauth.auth_failure IS
    'Failed client authentications: when, which client id, from where (source), and why.';
COMMENT ON COLUMN oauth.auth_failure.id IS 'Sequence number.';
COMMENT ON COLUMN oauth.auth_failure.at IS 'When it failed.';
COMMENT ON COLUMN oauth.auth_failure.client_id IS 'The client id as presented (unknown ids too), cut to 255 characters.';
COMMENT ON COLUMN oauth.auth_failure.source IS
    'The caller''s address: the connection''s (local for Unix sockets) or, over PostgREST, the header named by pg_oauth.http_client_address_header.';
COMMENT ON COLUMN oauth.auth_failure.reason IS 'Why (unknown client, wrong secret, ...), and the lockout it caused; never the secret or assertion.';

COMMENT ON TABLE oauth.source_throttle IS
    'Requests refused per throttled source and window (pg_oauth.source_failure_limit); refused is at least half the true count (written at 1, 2, 4, 8, ... refusals).';
COMMENT ON COLUMN oauth.source_throttle.source IS 'The source: an address, or an IPv6 /64.';
COMMENT ON COLUMN oauth.source_throttle.window_start IS 'Start of the counting window (pg_oauth.lockout_window).';
COMMENT ON COLUMN oauth.source_throttle.first_at IS 'When the first refusal was recorded.';
COMMENT ON COLUMN oauth.source_throttle.last_at IS 'When the count was last raised.';
COMMENT ON COLUMN oauth.source_throttle.refused IS 'Requests refused in the window: at least half the true count.';

COMMENT ON TABLE oauth.client_lockout IS
    'Brute-force lockout per client id and source (see pg_oauth.lockout_*). DELETE a row to end its lockout.';
COMMENT ON COLUMN oauth.client_lockout.client_id IS 'The client id as presented.';
COMMENT ON COLUMN oauth.client_lockout.source IS 'The source: an address, or an IPv6 /64.';
COMMENT ON COLUMN oauth.client_lockout.failures IS 'Failed guesses counted in the current window.';
COMMENT ON COLUMN oauth.client_lockout.window_start IS 'Start of the current counting window.';
COMMENT ON COLUMN oauth.client_lockout.locked_until IS 'End of the lockout, if the threshold was reached.';

COMMENT ON VIEW oauth.audit_event IS
    'Audit trail: tokens issued and revoked, refresh grants revoked, failed client authentications (and lockouts), requests refused per throttled source and window.';
COMMENT ON COLUMN oauth.audit_event.at IS 'When it happened.';
COMMENT ON COLUMN oauth.audit_event.event IS 'token issued, token revoked, refresh grant revoked, authentication failed or source throttled.';
COMMENT ON COLUMN oauth.audit_event.client_id IS 'The client concerned, if any.';
COMMENT ON COLUMN oauth.audit_event.session_id IS 'The access token''s session, for token events.';
COMMENT ON COLUMN oauth.audit_event.detail IS 'The rest, as jsonb (never token material).';

COMMENT ON SEQUENCE oauth.audit_dropped_seq IS
    'Counts deferred audit writes that could not be carried out (see audit_dropped_events).';
