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
