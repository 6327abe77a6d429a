-- pg_oauth triggers and privileges. Loaded after every function exists.

ALTER FUNCTION oauth.client_before_write() SET search_path = pg_catalog, pg_temp;

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
    UPDATE oauth.session SET revoked_at = now()
     WHERE client_id = NEW.id AND revoked_at IS NULL;
    UPDATE oauth.refresh_family SET revoked_at = now()
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

-- Revoking a refresh token family (by oauth.auth_revoke, reuse detection or a DBA's UPDATE)
-- revokes every access token issued from it.
CREATE FUNCTION oauth.refresh_family_revoked() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE oauth.session SET revoked_at = NEW.revoked_at
     WHERE family_id = NEW.id AND revoked_at IS NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER refresh_family_revoked
    AFTER UPDATE OF revoked_at ON oauth.refresh_family
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION oauth.refresh_family_revoked();

-- A policy must name an existing role that is not a superuser.
CREATE FUNCTION oauth.policy_check_role() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    is_superuser boolean;
BEGIN
    SELECT rolsuper INTO is_superuser FROM pg_roles WHERE rolname = NEW.role;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role "%" does not exist', NEW.role
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create the role first (CREATE ROLE ... NOLOGIN) and, for PostgREST, grant it to the authenticator role.';
    END IF;
    IF is_superuser THEN
        RAISE EXCEPTION 'role "%" is a superuser; tokens must not act as a superuser', NEW.role
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER policy_check_role
    BEFORE INSERT OR UPDATE ON oauth.policy
    FOR EACH ROW EXECUTE FUNCTION oauth.policy_check_role();

-- Backends cache parsed signing keys; any change to the table invalidates those caches
-- (through PostgreSQL's relcache invalidation, so it is transactional and cluster-wide).
CREATE TRIGGER signing_key_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oauth.signing_key
    FOR EACH STATEMENT EXECUTE FUNCTION oauth.signing_key_changed();

-- Privileges. Nothing is open to PUBLIC; oauth_admin manages, oauth_app calls.
REVOKE ALL ON ALL TABLES IN SCHEMA oauth FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA oauth FROM PUBLIC;
REVOKE ALL ON SCHEMA oauth FROM PUBLIC;
GRANT USAGE ON SCHEMA oauth TO oauth_admin, oauth_app;
GRANT oauth_app TO oauth_admin;

-- Secrets are write-only: oauth_admin may set them but never read the hashes.
GRANT SELECT (id, grant_types, scope, audience, type, token_format, jwt_alg,
              access_token_expiration, refresh_token, refresh_token_expiration, jwks,
              active, created_at, updated_at, previous_secret_expires_at)
    ON oauth.client TO oauth_admin;
GRANT INSERT (id, secret, grant_types, scope, audience, type, token_format, jwt_alg,
              access_token_expiration, refresh_token, refresh_token_expiration, jwks, active)
    ON oauth.client TO oauth_admin;
GRANT UPDATE (secret, grant_types, scope, audience, type, token_format, jwt_alg,
              access_token_expiration, refresh_token, refresh_token_expiration, jwks, active)
    ON oauth.client TO oauth_admin;
GRANT DELETE ON oauth.client TO oauth_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth.policy TO oauth_admin;
GRANT SELECT, DELETE ON oauth.session TO oauth_admin;
GRANT UPDATE (revoked_at) ON oauth.session TO oauth_admin;
GRANT SELECT, DELETE ON oauth.refresh_family, oauth.refresh_token TO oauth_admin;
GRANT UPDATE (revoked_at) ON oauth.refresh_family TO oauth_admin;
-- Keys: the admin sees and may delete keys (e.g. a compromised one) but never private parts.
GRANT SELECT (kid, alg, public_jwk, state, created_at, activated_at, retired_at, expires_at)
    ON oauth.signing_key TO oauth_admin;
GRANT DELETE ON oauth.signing_key TO oauth_admin;

GRANT EXECUTE ON FUNCTION oauth.create_client, oauth.rotate_signing_key TO oauth_admin;
GRANT EXECUTE ON FUNCTION oauth.auth_token, oauth.auth_verify(text), oauth.auth_verify(text, text),
    oauth.auth_revoke, oauth.auth_introspect, oauth.auth_jwks, oauth.auth_metadata
    TO oauth_app;
