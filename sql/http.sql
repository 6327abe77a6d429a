-- The PostgREST surface's SQL helpers: the pre-request hook and the endpoint generator.

-- PostgREST db-pre-request: the resource server's gate (src/api/gate.rs). A bearer token must
-- be the very token of an open session; a DPoP-bound token (RFC 9449) comes in the DPoP scheme,
-- which PostgREST does not read (the request reaches here as anonymous), with a proof for this
-- request: the request then takes its token's claims and role (the authenticator must be a
-- member of that role, as for bearer tokens). Refusals are 401 with an RFC 6750 or RFC 9449
-- challenge (PostgREST turns a PGRST error into that response). It runs as whatever role the
-- request has, so it is executable by all; SECURITY INVOKER, since only the request's own
-- role may be switched (SET ROLE is refused inside SECURITY DEFINER functions).
CREATE FUNCTION oauth.postgrest_pre_request() RETURNS void
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    outcome jsonb := oauth.postgrest_request_check();
BEGIN
    IF outcome IS NULL THEN
        RETURN;
    END IF;
    IF outcome ? 'error' THEN
        RAISE SQLSTATE 'PGRST'
            USING MESSAGE = json_build_object('code', outcome ->> 'error',
                                              'message', outcome ->> 'error_description')::text,
                  DETAIL = json_build_object('status', (outcome ->> 'status')::int,
                                             'headers', outcome -> 'headers')::text;
    END IF;
    PERFORM set_config('request.jwt.claims', (outcome -> 'claims')::text, true);
    IF outcome -> 'claims' ? 'role' THEN
        PERFORM set_config('role', outcome -> 'claims' ->> 'role', true);
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
--   GET /rpc/smart_configuration, GET /rpc/protected_resource
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
    FOREACH endpoint IN ARRAY ARRAY['jwks', 'metadata', 'smart_configuration', 'protected_resource'] LOOP
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
