-- pg_oauth 0.1.0 -> 0.2.0. Version 0.2.0 is not released yet: this script grows with it
-- until it is, then it is frozen like the release's install script.
\echo Use "ALTER EXTENSION pg_oauth UPDATE" to load this file. \quit

-- Introspection over HTTP shows a client only its own tokens unless it is allowed more.
ALTER TABLE oauth.client ADD COLUMN introspect_any boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN oauth.client.introspect_any IS
    'Whether this client (a resource server) may introspect tokens issued to other clients over HTTP; others see only their own.';
GRANT SELECT (introspect_any), INSERT (introspect_any), UPDATE (introspect_any)
    ON oauth.client TO oauth_admin;

-- The one rule for policy roles (src/policy.rs), on policy writes and at every issuance;
-- it now also refuses CREATEROLE, BYPASSRLS, REPLICATION and members of privileged roles.
CREATE FUNCTION oauth.policy_role_problem(role_name text) RETURNS text
STRICT STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'policy_role_problem_wrapper';
COMMENT ON FUNCTION oauth.policy_role_problem(text) IS
    'Why a role may not be a policy role (tokens act as it), or NULL: missing, privileged, or a member of a privileged role.';

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
COMMENT ON FUNCTION oauth.auth_smart_configuration() IS
    'SMART App Launch 2.x configuration (.well-known/smart-configuration) for this database; needs pg_oauth.issuer.';

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
COMMENT ON FUNCTION oauth.audit_min_retention_secs() IS
    'Internal (oauth.purge_expired): pg_oauth.audit_min_retention in seconds.';
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
COMMENT ON FUNCTION oauth.audit_dropped_events() IS
    'How many deferred audit writes (failed authentications, refresh family revocations of failed requests) could not be carried out since installation; see the server log for each.';

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

COMMENT ON TABLE oauth.source_throttle IS
    'Requests refused per throttled source and window (pg_oauth.source_failure_limit); refused is at least half the true count (written at 1, 2, 4, 8, ... refusals).';

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

COMMENT ON VIEW oauth.audit_event IS
    'Audit trail: tokens issued and revoked, refresh grants revoked, failed client authentications (and lockouts), requests refused per throttled source and window.';
