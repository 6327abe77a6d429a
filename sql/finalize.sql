-- pg_oauth triggers and privileges. Loaded after every function exists.

ALTER FUNCTION oauth.client_before_write() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION oauth.invalidate_caches() SET search_path = pg_catalog, pg_temp;

CREATE TRIGGER client_before_write
    BEFORE INSERT OR UPDATE ON oauth.client
    FOR EACH ROW EXECUTE FUNCTION oauth.client_before_write();

-- Deactivating a client revokes its live sessions; deleting it deletes them.
CREATE FUNCTION oauth.client_close_sessions() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM oauth.session WHERE client_id = OLD.id;
        DELETE FROM oauth.refresh_family WHERE client_id = OLD.id;
        RETURN OLD;
    END IF;
    UPDATE oauth.session SET revoked_at = now(), revoked_reason = 'client deactivated'
     WHERE client_id = NEW.id AND revoked_at IS NULL;
    UPDATE oauth.refresh_family SET revoked_at = now(), revoked_reason = 'client deactivated'
     WHERE client_id = NEW.id AND revoked_at IS NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER client_deactivated
    AFTER UPDATE OF active ON oauth.client
    FOR EACH ROW WHEN (OLD.active AND NOT NEW.active)
    EXECUTE FUNCTION oauth.client_close_sessions();

CREATE TRIGGER client_deleted
    AFTER DELETE ON oauth.client
    FOR EACH ROW EXECUTE FUNCTION oauth.client_close_sessions();

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

-- Revoking a refresh token family (by oauth.auth_revoke, reuse detection or a DBA's UPDATE)
-- revokes every access token issued from it.
CREATE FUNCTION oauth.refresh_family_revoked() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE oauth.session
       SET revoked_at = NEW.revoked_at,
           revoked_reason = 'refresh grant revoked: ' || NEW.revoked_reason
     WHERE family_id = NEW.id AND revoked_at IS NULL;
    RETURN NEW;
END
$$;

-- Every revocation says why: pg_oauth's own give a reason; any other (a DBA's UPDATE)
-- records who did it.
CREATE FUNCTION oauth.revocation_reason() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.revoked_reason IS NULL THEN
        NEW.revoked_reason := format('revoked by %s', session_user);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER session_revocation_reason
    BEFORE UPDATE OF revoked_at ON oauth.session
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION oauth.revocation_reason();
CREATE TRIGGER refresh_family_revocation_reason
    BEFORE UPDATE OF revoked_at ON oauth.refresh_family
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION oauth.revocation_reason();

CREATE TRIGGER refresh_family_revoked
    AFTER UPDATE OF revoked_at ON oauth.refresh_family
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION oauth.refresh_family_revoked();

-- A policy must name a role tokens may act as. The rule (src/policy.rs) is checked here, on
-- every write of a policy, and again at every issuance.
COMMENT ON FUNCTION oauth.policy_role_problem(text) IS
    'Why a role may not be a policy role (tokens act as it), or NULL: missing, privileged, or a member of a privileged role.';

CREATE FUNCTION oauth.policy_check_role() RETURNS trigger
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

CREATE TRIGGER policy_check_role
    BEFORE INSERT OR UPDATE ON oauth.policy
    FOR EACH ROW EXECUTE FUNCTION oauth.policy_check_role();

-- Backends cache clients (with their policy) and parsed signing keys; any change to these
-- tables invalidates those caches (through PostgreSQL's relcache invalidation, so it is
-- transactional and reaches every backend). See src/cache.rs.
CREATE TRIGGER client_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oauth.client
    FOR EACH STATEMENT EXECUTE FUNCTION oauth.invalidate_caches();
CREATE TRIGGER policy_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oauth.policy
    FOR EACH STATEMENT EXECUTE FUNCTION oauth.invalidate_caches();
CREATE TRIGGER signing_key_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oauth.signing_key
    FOR EACH STATEMENT EXECUTE FUNCTION oauth.invalidate_caches();
CREATE TRIGGER client_lockout_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oauth.client_lockout
    FOR EACH STATEMENT EXECUTE FUNCTION oauth.invalidate_caches();

-- Deferred audit writes (a failure recorded although its request failed) that could not
-- be carried out, e.g. with no background worker slot: counted, never lost silently.
CREATE SEQUENCE oauth.audit_dropped_seq;
CREATE FUNCTION oauth.audit_dropped_events() RETURNS bigint
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM oauth.audit_dropped_seq $$;
COMMENT ON FUNCTION oauth.audit_dropped_events() IS
    'How many deferred audit writes (failed authentications, refresh family revocations of failed requests) could not be carried out since installation; see the server log for each.';

-- The audit trail in one place, without token material: issuance and revocation (from the
-- sessions and refresh grants), failed authentications and lockouts. Rows live as long as
-- their source rows (see oauth.purge_expired).
CREATE VIEW oauth.audit_event AS
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

COMMENT ON VIEW oauth.audit_event IS
    'Audit trail: tokens issued and revoked, refresh grants revoked, failed client authentications (and lockouts), requests refused per throttled source and window.';

-- Housekeeping: delete what has expired, at most max_rows rows per call (so a scheduled
-- call has a bounded cost; call again while it returns max_rows). Sessions and refresh
-- tokens are kept for `retention` after they expire (the audit trail), failures for
-- `retention` after they happened; assertion jtis go as soon as they expire. `retention`
-- may not be shorter than pg_oauth.audit_min_retention (default 1 day).
CREATE FUNCTION oauth.purge_expired(max_rows integer DEFAULT 10000,
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

-- PostgREST db-pre-request: refuse requests whose token's session was revoked or deleted,
-- with 401 and an RFC 6750 WWW-Authenticate challenge (PostgREST turns a PGRST error into
-- that response). It runs as whatever role the token names, so it is executable by all;
-- SECURITY DEFINER so that oauth.request_token_problem itself is not.
CREATE FUNCTION oauth.postgrest_pre_request() RETURNS void
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

-- The parameters the HTTP endpoints accept as form fields. PostgREST 12 maps each form
-- field to a named argument, so every OAuth parameter a client may send (the IANA OAuth
-- Parameters registry, as used at the token, revocation and introspection endpoints) is
-- declared; unknown JSON members are accepted through the jsonb overload.
CREATE FUNCTION oauth.http_parameter_names() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY[
    'grant_type', 'client_id', 'client_secret', 'scope', 'audience', 'resource',
    'refresh_token', 'client_assertion_type', 'client_assertion', 'token', 'token_type_hint',
    'code', 'redirect_uri', 'code_verifier', 'username', 'password', 'assertion',
    'device_code', 'auth_req_id', 'requested_token_type', 'subject_token',
    'subject_token_type', 'actor_token', 'actor_token_type', 'authorization_details',
    'state', 'nonce', 'response_type', 'response_mode', 'prompt', 'login_hint',
    'acr_values', 'claims', 'request', 'request_uri', 'max_age', 'ui_locales',
    'id_token_hint', 'dpop_jkt', 'realm'] $$;

-- One call sets up the PostgREST endpoints in the API schema:
--   POST /rpc/token, POST /rpc/revoke, POST /rpc/introspect, GET /rpc/jwks, GET /rpc/metadata,
--   GET /rpc/smart_configuration
-- and lets the authenticator run the pre-config hook. Run it as the owner of pg_oauth.
CREATE FUNCTION oauth.create_http_endpoints(
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

-- Privileges. Nothing is open to PUBLIC; oauth_admin manages, oauth_app calls.
REVOKE ALL ON ALL TABLES IN SCHEMA oauth FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA oauth FROM PUBLIC;
REVOKE ALL ON SCHEMA oauth FROM PUBLIC;
-- Every role may use the schema's names, but only the claim helpers below are executable by
-- all: they read nothing but the caller's own request claims (PostgREST's roles need them in
-- RLS policies and in the pre-request hook).
GRANT USAGE ON SCHEMA oauth TO PUBLIC;
GRANT oauth_app TO oauth_admin;

-- Secrets are write-only: oauth_admin may set them but never read the hashes.
GRANT SELECT (id, grant_types, scope, audience, type, token_format, jwt_alg,
              access_token_expiration, refresh_token, refresh_token_expiration, jwks,
              active, created_at, updated_at, previous_secret_expires_at, introspect_any)
    ON oauth.client TO oauth_admin;
GRANT INSERT (id, secret, grant_types, scope, audience, type, token_format, jwt_alg,
              access_token_expiration, refresh_token, refresh_token_expiration, jwks, active,
              introspect_any)
    ON oauth.client TO oauth_admin;
GRANT UPDATE (secret, grant_types, scope, audience, type, token_format, jwt_alg,
              access_token_expiration, refresh_token, refresh_token_expiration, jwks, active,
              introspect_any)
    ON oauth.client TO oauth_admin;
GRANT DELETE ON oauth.client TO oauth_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth.policy TO oauth_admin;
GRANT SELECT, DELETE ON oauth.session TO oauth_admin;
GRANT UPDATE (revoked_at, revoked_reason) ON oauth.session TO oauth_admin;
GRANT SELECT, DELETE ON oauth.refresh_family, oauth.refresh_token TO oauth_admin;
GRANT UPDATE (revoked_at, revoked_reason) ON oauth.refresh_family TO oauth_admin;
GRANT SELECT ON oauth.auth_failure, oauth.audit_event TO oauth_admin;
GRANT SELECT ON oauth.source_throttle TO oauth_admin;
GRANT SELECT, DELETE ON oauth.client_lockout TO oauth_admin;
-- Keys: the admin sees and may delete keys (e.g. a compromised one) but never private parts.
GRANT SELECT (kid, alg, public_jwk, state, created_at, activated_at, retired_at, expires_at)
    ON oauth.signing_key TO oauth_admin;
GRANT DELETE ON oauth.signing_key TO oauth_admin;

GRANT SELECT, INSERT, DELETE ON oauth.fhir_resource_type TO oauth_admin;
GRANT SELECT, DELETE ON oauth.client_assertion_jti TO oauth_admin;
GRANT EXECUTE ON FUNCTION oauth.create_client, oauth.rotate_client_secret,
    oauth.rotate_signing_key, oauth.ensure_signing_keys, oauth.purge_expired,
    oauth.policy_role_problem, oauth.audit_dropped_events
    TO oauth_admin;
GRANT EXECUTE ON FUNCTION oauth.auth_token, oauth.auth_verify(text), oauth.auth_verify(text, text),
    oauth.auth_revoke, oauth.auth_introspect, oauth.auth_jwks, oauth.auth_metadata,
    oauth.auth_smart_configuration
    TO oauth_app;
COMMENT ON FUNCTION oauth.audit_min_retention_secs() IS
    'Internal (oauth.purge_expired): pg_oauth.audit_min_retention in seconds.';
COMMENT ON FUNCTION oauth.auth_smart_configuration() IS
    'SMART App Launch 2.x configuration (.well-known/smart-configuration) for this database; needs pg_oauth.issuer.';
-- Check constraints run with the writer's privileges.
GRANT EXECUTE ON FUNCTION oauth.is_string_or_uri, oauth.are_strings_or_uris TO PUBLIC;
GRANT EXECUTE ON FUNCTION oauth.claims, oauth.client_id, oauth.has_scope, oauth.has_any_scope,
    oauth.has_all_scopes, oauth.postgrest_pre_request
    TO PUBLIC;
