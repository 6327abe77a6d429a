-- pg_oauth 0.2.0 -> 0.3.0. Version 0.3.0 is not released yet: this script grows with it until
-- it is, then it is frozen like the release's install script. It ends with the same
-- description block as sql/finalize.sql (the upgrade test compares them).
\echo Use "ALTER EXTENSION pg_oauth UPDATE" to load this file. \quit

-- Privileges, set explicitly. What the installing role's default privileges (ALTER DEFAULT
-- PRIVILEGES ... TO reporting) granted when pg_oauth was created is in pg_init_privs: revoke
-- every privilege recorded there, then grant exactly pg_oauth's own (as finalize.sql does at
-- install). Grants made since installation are kept; each revoked privilege that is not
-- pg_oauth's own is named in a WARNING.
DO $acl$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT DISTINCT o.kind, o.name, a.privilege_type,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END AS grantee,
               coalesce(' (' || pg_catalog.quote_ident(col.attname) || ')', '') AS columns,
               a.grantee = 0 OR r.rolname IN ('oauth_admin', 'oauth_app') AS ours
          FROM pg_catalog.pg_init_privs i
          JOIN (SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classoid, c.oid,
                       CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind,
                       c.oid::pg_catalog.regclass::text AS name, c.relowner AS owner
                  FROM pg_catalog.pg_class c WHERE c.relnamespace = 'oauth'::pg_catalog.regnamespace
                UNION ALL
                SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid, 'FUNCTION',
                       p.oid::pg_catalog.regprocedure::text, p.proowner
                  FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'oauth'::pg_catalog.regnamespace
                UNION ALL
                SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass, n.oid, 'SCHEMA', 'oauth', n.nspowner
                  FROM pg_catalog.pg_namespace n WHERE n.nspname = 'oauth') AS o
            ON o.classoid = i.classoid AND o.oid = i.objoid
         CROSS JOIN LATERAL pg_catalog.aclexplode(i.initprivs) AS a
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
          LEFT JOIN pg_catalog.pg_attribute col
                 ON i.objsubid > 0 AND col.attrelid = i.objoid AND col.attnum = i.objsubid
         WHERE i.privtype = 'e' AND a.grantee <> o.owner
    LOOP
        EXECUTE pg_catalog.format('REVOKE %s%s ON %s %s FROM %s', item.privilege_type,
                                  item.columns, item.kind, item.name, item.grantee);
        IF NOT item.ours THEN
            RAISE WARNING 'pg_oauth: revoked % on % % from %, granted by default privileges when pg_oauth was installed',
                item.privilege_type || item.columns, lower(item.kind), item.name, item.grantee;
        END IF;
    END LOOP;
END
$acl$;

-- Keys sign only after they are published. The trigger that makes a JWT client's keys now
-- leaves rows loaded with COPY alone (a restore brings the keys it had); it is C code, and
-- SECURITY DEFINER as the function it called was.
CREATE OR REPLACE FUNCTION oauth.client_ensure_signing_keys()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'client_ensure_signing_keys_wrapper';
ALTER FUNCTION oauth.client_ensure_signing_keys() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- DPoP (RFC 9449): a client may be required to bind its tokens to a key.
ALTER TABLE oauth.client ADD COLUMN dpop_bound_access_tokens boolean NOT NULL DEFAULT false;

-- Token exchange (RFC 8693): which client may exchange the tokens issued to which client, and
-- for what. No row, no exchange. No foreign keys, as for oauth.policy; deleting a client
-- deletes the rows that name it (finalize.sql).
CREATE TABLE oauth.exchange_policy (
    client_id           text NOT NULL,
    subject_client_id   text NOT NULL,
    scope               text[],
    audience            text[],
    impersonation       boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, subject_client_id)
);

-- Token exchange of other issuers' tokens (RFC 8693): whose tokens may be exchanged, checked
-- how, and standing for which pg_oauth client. Keys by value: nothing is fetched inside a
-- transaction. Deleting the client deletes the row (finalize.sql).
CREATE TABLE oauth.trusted_issuer (
    issuer              text PRIMARY KEY,
    jwks                jsonb NOT NULL,
    algorithms          text[] NOT NULL DEFAULT '{RS256,ES256}',
    audiences           text[] NOT NULL,
    max_token_age       integer NOT NULL DEFAULT 3600,
    token_type          text,
    subject_client_id   text NOT NULL,
    scope               text[] NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT trusted_issuer_jwks_is_jwk_set
        CHECK (jsonb_typeof(jwks -> 'keys') = 'array'),
    CONSTRAINT trusted_issuer_jwks_public_only
        CHECK (NOT jsonb_path_exists(jwks,
            '$.keys[*] ? (exists(@.d) || exists(@.p) || exists(@.q) || exists(@.k) || @.kty == "oct")')),
    CONSTRAINT trusted_issuer_algorithms_supported
        CHECK (cardinality(algorithms) > 0
               AND algorithms <@ ARRAY['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
                                       'ES256', 'ES384', 'EdDSA']),
    CONSTRAINT trusted_issuer_audiences_given
        CHECK (cardinality(audiences) > 0),
    CONSTRAINT trusted_issuer_max_token_age_positive
        CHECK (max_token_age > 0)
);

-- Clients may be allowed token exchange (RFC 8693).
ALTER TABLE oauth.client
    DROP CONSTRAINT grant_types_supported,
    ADD CONSTRAINT grant_types_supported
        CHECK (grant_types <@ ARRAY['client_credentials', 'refresh_token',
                                    'urn:ietf:params:oauth:grant-type:token-exchange']);

-- Certificate-bound tokens and client authentication by TLS certificate (RFC 8705).
ALTER TABLE oauth.client
    ADD COLUMN tls_client_certificate_bound_access_tokens boolean NOT NULL DEFAULT false,
    ADD COLUMN tls_client_auth_subject_dn text,
    ADD COLUMN tls_client_auth_san_dns text,
    ADD COLUMN tls_client_auth_san_uri text,
    ADD COLUMN tls_client_auth_san_ip text,
    ADD COLUMN tls_client_auth_san_email text,
    ADD CONSTRAINT tls_client_auth_one_name
        CHECK (num_nonnulls(tls_client_auth_subject_dn, tls_client_auth_san_dns,
                            tls_client_auth_san_uri, tls_client_auth_san_ip,
                            tls_client_auth_san_email) <= 1);

-- oauth.create_client leaves out of its INSERT what it is not given, so that a column's
-- default (sql/clients.sql) is the one home of each default; it takes the new column too.
DROP FUNCTION oauth.create_client(text, text[], text[], text, text[], integer, boolean, text,
                                  text, integer, jsonb, boolean, boolean);
CREATE FUNCTION oauth.create_client(
	"id" TEXT,
	"scope" TEXT[] DEFAULT NULL,
	"grant_types" TEXT[] DEFAULT NULL,
	"token_format" TEXT DEFAULT NULL,
	"audience" TEXT[] DEFAULT NULL,
	"access_token_expiration" INT DEFAULT NULL,
	"refresh_token" bool DEFAULT NULL,
	"client_type" TEXT DEFAULT NULL,
	"jwt_alg" TEXT DEFAULT NULL,
	"refresh_token_expiration" INT DEFAULT NULL,
	"jwks" jsonb DEFAULT NULL,
	"active" bool DEFAULT NULL,
	"introspect_any" bool DEFAULT NULL,
	"dpop_bound_access_tokens" bool DEFAULT NULL
) RETURNS TEXT
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_client_0_3_wrapper';

-- PostgREST db-pre-request: the resource server's gate (src/api/gate.rs). A bearer token must
-- be the very token of an open session; a DPoP-bound token (RFC 9449) comes in the DPoP scheme,
-- which PostgREST does not read (the request reaches here as anonymous), with a proof for this
-- request: the request then takes its token's claims and role (the authenticator must be a
-- member of that role, as for bearer tokens). Refusals are 401 with an RFC 6750 or RFC 9449
-- challenge (PostgREST turns a PGRST error into that response). It runs as whatever role the
-- request has, so it is executable by all; SECURITY INVOKER, since only the request's own
-- role may be switched (SET ROLE is refused inside SECURITY DEFINER functions).
CREATE OR REPLACE FUNCTION oauth.postgrest_pre_request() RETURNS void
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
-- RFC 9728 protected resource metadata of the API; the endpoint generator makes its PostgREST
-- endpoint too (re-run oauth.create_http_endpoints after upgrading).
CREATE FUNCTION oauth."http_protected_resource"() RETURNS jsonb
STRICT STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'http_protected_resource_wrapper';
-- One call sets up the PostgREST endpoints in the API schema:
--   POST /rpc/token, POST /rpc/revoke, POST /rpc/introspect, GET /rpc/jwks, GET /rpc/metadata,
--   GET /rpc/smart_configuration, GET /rpc/protected_resource
-- and lets the authenticator run the pre-config hook. Run it as the owner of pg_oauth.
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

CREATE FUNCTION oauth."auth_dpop_nonce"() RETURNS TEXT
STRICT VOLATILE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'auth_dpop_nonce_wrapper';
CREATE FUNCTION oauth."postgrest_request_check"() RETURNS jsonb
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'postgrest_request_check_wrapper';

-- The token endpoint takes a DPoP proof and token exchange (RFC 8693), and auth_verify a proof
-- with the request it came with.
DROP FUNCTION oauth.auth_token(text, text, text, text, text, text, text, text);
CREATE FUNCTION oauth.auth_token(
	"grant_type" TEXT,
	"client_id" TEXT DEFAULT NULL,
	"client_secret" TEXT DEFAULT NULL,
	"scope" TEXT DEFAULT NULL,
	"audience" TEXT DEFAULT NULL,
	"refresh_token" TEXT DEFAULT NULL,
	"client_assertion_type" TEXT DEFAULT NULL,
	"client_assertion" TEXT DEFAULT NULL,
	"dpop" TEXT DEFAULT NULL,
	"subject_token" TEXT DEFAULT NULL,
	"subject_token_type" TEXT DEFAULT NULL,
	"actor_token" TEXT DEFAULT NULL,
	"actor_token_type" TEXT DEFAULT NULL,
	"requested_token_type" TEXT DEFAULT NULL
) RETURNS jsonb
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'auth_token_0_3_wrapper';
CREATE FUNCTION oauth.auth_verify(
	"token" TEXT,
	"dpop" TEXT,
	"htm" TEXT,
	"htu" TEXT,
	"audience" TEXT DEFAULT NULL,
	"client_certificate" TEXT DEFAULT NULL
) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'auth_verify_bound_wrapper';

-- A token issued in a transaction that committed after its client was deactivated stayed
-- valid: deactivating or deleting a client now waits for the tokens being issued to it.
DROP TRIGGER client_before_write ON oauth.client;
CREATE TRIGGER client_before_write
    BEFORE INSERT OR UPDATE OR DELETE ON oauth.client
    FOR EACH ROW EXECUTE FUNCTION oauth.client_before_write();

-- No foreign keys between pg_oauth's tables: pg_restore --jobs loads them in any order, and
-- a policy or refresh token loaded before its client or grant was refused. Triggers do the
-- deleting the foreign keys cascaded, and the policy trigger requires the client (rows
-- loaded with COPY excepted).
ALTER TABLE oauth.policy DROP CONSTRAINT policy_client_id_fkey;
ALTER TABLE oauth.refresh_token DROP CONSTRAINT refresh_token_family_id_fkey;
CREATE OR REPLACE FUNCTION oauth.client_close_sessions() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM oauth.policy WHERE client_id = OLD.id;
        DELETE FROM oauth.console_access WHERE client_id = OLD.id;
        DELETE FROM oauth.exchange_policy WHERE OLD.id IN (client_id, subject_client_id);
        DELETE FROM oauth.trusted_issuer WHERE subject_client_id = OLD.id;
        UPDATE oauth.session SET revoked_at = now(), revoked_reason = 'client deleted'
         WHERE client_id = OLD.id AND revoked_at IS NULL;
        UPDATE oauth.refresh_family SET revoked_at = now(), revoked_reason = 'client deleted'
         WHERE client_id = OLD.id AND revoked_at IS NULL;
        RETURN OLD;
    END IF;
    UPDATE oauth.session SET revoked_at = now(), revoked_reason = 'client deactivated'
     WHERE client_id = NEW.id AND revoked_at IS NULL;
    UPDATE oauth.refresh_family SET revoked_at = now(), revoked_reason = 'client deactivated'
     WHERE client_id = NEW.id AND revoked_at IS NULL;
    RETURN NEW;
END
$$;

CREATE FUNCTION oauth.refresh_family_deleted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM oauth.refresh_token WHERE family_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER refresh_family_deleted
    AFTER DELETE ON oauth.refresh_family
    FOR EACH ROW EXECUTE FUNCTION oauth.refresh_family_deleted();

CREATE  FUNCTION oauth."loading_by_copy"() RETURNS bool /* bool */
STRICT VOLATILE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'loading_by_copy_wrapper';
CREATE OR REPLACE FUNCTION oauth.policy_check_role() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text;
BEGIN
    IF NOT EXISTS (SELECT FROM oauth.client WHERE id = NEW.client_id) AND NOT oauth.loading_by_copy() THEN
        RAISE EXCEPTION 'client "%" does not exist', NEW.client_id
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Create the client first (INSERT INTO oauth.client, or oauth.create_client).';
    END IF;
    problem := oauth.policy_role_problem(NEW.role);
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

-- The console (/console on the listener): which clients' tokens sign in to it, and the role
-- each one's actions there run as (src/flow/console.rs). Unlike a policy role, it may be a
-- member of oauth_admin (that is the point); every other privilege a policy role may not
-- have it may not have either, and only a member of the role may name it. No row, no
-- console. No foreign key, as for oauth.policy.
CREATE TABLE oauth.console_access (
    client_id   text PRIMARY KEY,
    role        name NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE  FUNCTION oauth."console_role_problem"(
	"role_name" TEXT /* &str */
) RETURNS TEXT /* core::option::Option<alloc::string::String> */
STRICT STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'console_role_problem_wrapper';

-- Console access names an existing client (as a policy does) and a role its console actions
-- may run as (src/store/policy.rs, the console's variant of the rule), which the writer must
-- be a member of: naming a role hands its privileges to the client's tokens at the console,
-- so only who could SET ROLE to it may. Rows loaded with COPY (a restore) may come before
-- their client.
CREATE FUNCTION oauth.console_check_role() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text;
BEGIN
    IF NOT EXISTS (SELECT FROM oauth.client WHERE id = NEW.client_id) AND NOT oauth.loading_by_copy() THEN
        RAISE EXCEPTION 'client "%" does not exist', NEW.client_id
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Create the client first (INSERT INTO oauth.client, or oauth.create_client).';
    END IF;
    problem := oauth.console_role_problem(NEW.role);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%; the console must not act as a privileged role', problem
            USING ERRCODE = CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = NEW.role)
                                 THEN 'insufficient_privilege' ELSE 'undefined_object' END,
                  HINT = 'Use a NOLOGIN role granted oauth_admin (CREATE ROLE console_admin NOLOGIN IN ROLE oauth_admin).';
    END IF;
    IF NOT pg_has_role(current_user, NEW.role, 'MEMBER') THEN
        RAISE EXCEPTION 'only a member of role "%" may let the console act as it', NEW.role
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER console_check_role
    BEFORE INSERT OR UPDATE ON oauth.console_access
    FOR EACH ROW EXECUTE FUNCTION oauth.console_check_role();

-- oauth.session becomes 16 partitions by issue time, emptied whole by oauth.purge_expired
-- (sql/tokens.sql). Its rows are copied into the new table, each into the partition of its
-- id, which costs about as much as copying the table: purge it first if it is large
-- (docs/operations.md, "Upgrades"). The audit view and the revocation-reason trigger move to
-- the new table with it.
CREATE FUNCTION oauth."session_slot"(
	"at" timestamp with time zone /* pgrx :: datum :: TimestampWithTimeZone */
) RETURNS smallint /* i16 */
STRICT STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'session_slot_wrapper';

-- Grants made on the view since installation go to the new one (carried in a setting).
SELECT pg_catalog.set_config('pg_oauth.upgrade_view_acl', coalesce(c.relacl::text, '{}'), true)
  FROM pg_catalog.pg_class c WHERE c.oid = 'oauth.audit_event'::pg_catalog.regclass;
DROP VIEW oauth.audit_event;
ALTER TABLE oauth.session RENAME TO session_0_2;
ALTER TABLE oauth.session_0_2 RENAME CONSTRAINT session_pkey TO session_0_2_pkey;
-- PostgreSQL 18 keeps NOT NULL constraints by name (session_<column>_not_null): out of the
-- new table's way. (Before 18 there are none to rename.)
DO $not_null$
DECLARE
    name text;
BEGIN
    FOR name IN SELECT c.conname FROM pg_catalog.pg_constraint c
                 WHERE c.conrelid = 'oauth.session_0_2'::pg_catalog.regclass AND c.contype = 'n' LOOP
        EXECUTE pg_catalog.format('ALTER TABLE oauth.session_0_2 RENAME CONSTRAINT %I TO %I',
                                  name, 'session_0_2' || pg_catalog.substr(name, 8));
    END LOOP;
END
$not_null$;
DROP INDEX oauth.session_client_id_idx, oauth.session_expires_at_idx, oauth.session_family_id_idx;

CREATE TABLE oauth.session (
    id          uuid NOT NULL,
    client_id   text NOT NULL,
    token_hash  bytea NOT NULL,
    -- 'opaque' or 'jwt'; written only by pg_oauth (a CHECK here would be re-evaluated
    -- from its stored form on every single-row insert: ~15% of an issuance).
    format      text NOT NULL,
    scope       text[] NOT NULL,
    audience    text[] NOT NULL,
    role        text,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    family_id   uuid,
    -- Who or what revoked it (the client, reuse detection, deactivation, an administrator).
    revoked_reason text,
    -- The partition: a function of id (see above).
    slot        smallint NOT NULL,
    -- A DPoP-bound token (RFC 9449): the SHA-256 thumbprint of the key it is bound to.
    jkt         text,
    -- A certificate-bound token (RFC 8705): the SHA-256 thumbprint of the client's certificate.
    x5t         text,
    -- An exchanged token (RFC 8693): its subject (sub) when that is not the client, the actor
    -- chain (act), and the session of the subject token it was exchanged from.
    subject     text,
    act         jsonb,
    exchanged_from uuid,
    -- revoked_at is included so the JWT revocation check can be an index-only probe.
    PRIMARY KEY (id, slot) INCLUDE (revoked_at)
) PARTITION BY LIST (slot);

CREATE INDEX session_client_id_idx ON oauth.session (client_id);
-- For oauth.purge_expired(): whether a partition still holds a token that has not expired
-- past the retention, at almost no cost to issuance (sessions arrive in expiry order,
-- nearly; a B-tree would add a write per token).
CREATE INDEX session_expires_at_idx ON oauth.session USING brin (expires_at)
    WITH (autosummarize = on);

DO $partitions$
BEGIN
    FOR slot IN 0..15 LOOP
        EXECUTE pg_catalog.format('CREATE TABLE oauth.%I PARTITION OF oauth.session FOR VALUES IN (%s)',
                                  'session_p' || pg_catalog.lpad(slot::text, 2, '0'), slot);
    END LOOP;
END
$partitions$;
CREATE INDEX session_family_id_idx ON oauth.session (family_id) WHERE family_id IS NOT NULL;
CREATE INDEX session_exchanged_from_idx ON oauth.session (exchanged_from)
    WHERE exchanged_from IS NOT NULL;

INSERT INTO oauth.session (id, client_id, token_hash, format, scope, audience, role, issued_at,
                           expires_at, revoked_at, family_id, revoked_reason, slot)
SELECT id, client_id, token_hash, format, scope, audience, role, issued_at, expires_at,
       revoked_at, family_id, revoked_reason,
       -- the milliseconds in the UUIDv7's first 48 bits, as src/store/session.rs reads them
       oauth.session_slot(pg_catalog.to_timestamp(
           ('x' || pg_catalog.substr(pg_catalog.replace(id::text, '-', ''), 1, 12))::bit(48)::bigint / 1000.0))
  FROM oauth.session_0_2;

CREATE TRIGGER session_revocation_reason
    BEFORE UPDATE OF revoked_at ON oauth.session
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION oauth.revocation_reason();

-- Revoking a token revokes the tokens exchanged from it (RFC 8693), and theirs in turn.
CREATE FUNCTION oauth.session_revoke_exchanged() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE oauth.session SET revoked_at = NEW.revoked_at, revoked_reason = 'subject token revoked'
     WHERE exchanged_from = NEW.id AND revoked_at IS NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER session_revoke_exchanged
    AFTER UPDATE OF revoked_at ON oauth.session
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION oauth.session_revoke_exchanged();

CREATE VIEW oauth.audit_event AS
    SELECT s.issued_at AS at, 'token issued'::text AS event, s.client_id, s.id AS session_id,
           jsonb_build_object('format', s.format, 'scope', s.scope, 'audience', s.audience,
                              'role', s.role, 'expires_at', s.expires_at,
                              'refresh_grant', s.family_id)
           || CASE WHEN s.subject IS NULL THEN '{}'::jsonb
                   ELSE jsonb_build_object('subject', s.subject, 'act', s.act,
                                           'exchanged_from', s.exchanged_from) END AS detail
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

-- Housekeeping empties whole session partitions, and waits for no lock longer than 50 ms.
CREATE OR REPLACE FUNCTION oauth.purge_expired(max_rows integer DEFAULT 10000,
                                    retention interval DEFAULT '7 days')
RETURNS TABLE (relation text, deleted bigint)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '50ms'
AS $$
DECLARE
    budget bigint := max_rows;
    cutoff timestamptz := now() - retention;
    n bigint;
    step text;
    part regclass;
    has_rows boolean;
    has_live boolean;
    next_slot integer;
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

    -- Row by row, oldest first, each step within what is left of the budget.
    FOREACH step IN ARRAY ARRAY[
        'refresh_token',
        'refresh_family',
        'client_assertion_jti',
        'auth_failure',
        'source_throttle',
        'client_lockout'] LOOP
        n := 0;
        BEGIN
            CASE step
            WHEN 'refresh_token' THEN
                DELETE FROM oauth.refresh_token
                 WHERE ctid = ANY (ARRAY(SELECT ctid FROM oauth.refresh_token
                                          WHERE expires_at < cutoff LIMIT budget));
            WHEN 'refresh_family' THEN
                -- A grant is done when none of its refresh tokens and access tokens is left.
                DELETE FROM oauth.refresh_family f
                 WHERE f.id = ANY (ARRAY(
                        SELECT f2.id FROM oauth.refresh_family f2
                         WHERE f2.created_at < cutoff
                           AND NOT EXISTS (SELECT FROM oauth.refresh_token t WHERE t.family_id = f2.id)
                           AND NOT EXISTS (SELECT FROM oauth.session s WHERE s.family_id = f2.id)
                         LIMIT budget));
            WHEN 'client_assertion_jti' THEN
                DELETE FROM oauth.client_assertion_jti
                 WHERE ctid = ANY (ARRAY(SELECT ctid FROM oauth.client_assertion_jti
                                          WHERE expires_at < now() ORDER BY expires_at LIMIT budget));
            WHEN 'auth_failure' THEN
                DELETE FROM oauth.auth_failure
                 WHERE id = ANY (ARRAY(SELECT id FROM oauth.auth_failure
                                        WHERE at < cutoff ORDER BY id LIMIT budget));
            WHEN 'source_throttle' THEN
                DELETE FROM oauth.source_throttle
                 WHERE ctid = ANY (ARRAY(SELECT ctid FROM oauth.source_throttle
                                          WHERE last_at < cutoff LIMIT budget));
            WHEN 'client_lockout' THEN
                -- Lockout rows whose lockout and counting window are both over count for nothing.
                DELETE FROM oauth.client_lockout
                 WHERE ctid = ANY (ARRAY(SELECT ctid FROM oauth.client_lockout
                                          WHERE coalesce(locked_until, '-infinity') < now()
                                            AND window_start < now() - interval '1 day'
                                          LIMIT budget));
            END CASE;
            GET DIAGNOSTICS n = ROW_COUNT;
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'pg_oauth: oauth.% is in use; what expired there is left for the next purge', step;
        END;
        relation := step; deleted := n; RETURN NEXT;
        budget := budget - n;
    END LOOP;

    -- Sessions, last: a partition emptied here stays locked until the transaction ends.
    deleted := 0;
    next_slot := (oauth.session_slot(pg_catalog.now()) + 1) % 16;
    FOR slot IN 0..15 LOOP
        part := pg_catalog.format('oauth.session_p%s', pg_catalog.lpad(slot::text, 2, '0'))::regclass;
        EXECUTE pg_catalog.format('SELECT EXISTS (SELECT FROM %1$s), EXISTS (SELECT FROM %1$s WHERE expires_at >= $1)', part)
           INTO has_rows, has_live USING cutoff;
        CONTINUE WHEN NOT has_rows;
        BEGIN
            IF NOT has_live THEN
                EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', part);
                EXECUTE pg_catalog.format('SELECT EXISTS (SELECT FROM %s WHERE expires_at >= $1)', part)
                   INTO has_live USING cutoff;
                IF NOT has_live THEN
                    SELECT greatest(c.reltuples, 0)::bigint INTO n FROM pg_catalog.pg_class c WHERE c.oid = part;
                    EXECUTE pg_catalog.format('TRUNCATE %s', part);
                    RAISE NOTICE 'pg_oauth: emptied % (about % sessions, all expired before %)', part, n, cutoff;
                    deleted := deleted + n;
                END IF;
            ELSIF slot = next_slot AND budget > 0 THEN
                EXECUTE pg_catalog.format(
                    'DELETE FROM %1$s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %1$s WHERE expires_at < $1 LIMIT $2))', part)
                  USING cutoff, budget;
                GET DIAGNOSTICS n = ROW_COUNT;
                deleted := deleted + n;
                budget := budget - n;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'pg_oauth: % is in use; it is left for the next purge', part;
        END;
    END LOOP;
    relation := 'session'; RETURN NEXT;
END
$$;


-- PostgreSQL 18 logins with pg_oauth tokens: the triggers that publish each committed change
-- of what may log in to shared memory, and the functions that rebuild and show that state.
CREATE FUNCTION oauth."login_refresh"() RETURNS TEXT
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'login_refresh_wrapper';
CREATE FUNCTION oauth."login_status"() RETURNS TABLE (
	"database" oid,
	"issuer" TEXT,
	"keys" INT,
	"clients" INT,
	"tokens" INT
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'login_status_wrapper';
CREATE FUNCTION oauth."login_client_changed"() RETURNS TRIGGER
	LANGUAGE c AS 'MODULE_PATHNAME', 'login_client_changed_wrapper';
CREATE FUNCTION oauth."login_reset"() RETURNS TRIGGER
	LANGUAGE c AS 'MODULE_PATHNAME', 'login_reset_wrapper';
CREATE FUNCTION oauth."login_session_closed"() RETURNS TRIGGER
	LANGUAGE c AS 'MODULE_PATHNAME', 'login_session_closed_wrapper';
CREATE FUNCTION oauth."login_signing_key_changed"() RETURNS TRIGGER
	LANGUAGE c AS 'MODULE_PATHNAME', 'login_signing_key_changed_wrapper';

CREATE FUNCTION oauth."stats_counters"() RETURNS TABLE (
	"database" oid,
	"metric" TEXT,
	"labels" jsonb,
	"value" bigint,
	"description" TEXT
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'stats_counters_wrapper';
CREATE FUNCTION oauth."stats_reset"() RETURNS void
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'stats_reset_wrapper';
-- pg_oauth's counters, kept in shared memory (src/pg/shmem/stats.rs), in the pg_stat_* style:
-- one row per counter, zero or not. Database NULL: logins to PostgreSQL 18 (checked before a
-- database is chosen) and databases beyond the 16 counted on their own.
CREATE VIEW oauth.stats AS
SELECT d.datname AS database, c.metric, c.labels, c.value, c.description
  FROM oauth.stats_counters() AS c
  LEFT JOIN pg_catalog.pg_database AS d ON d.oid = c.database AND c.database <> 0;

-- The only one of these that runs SQL reads both tables under a pinned path (the others
-- run none).
ALTER FUNCTION oauth.login_client_changed() SET search_path = pg_catalog, pg_temp;

-- PostgreSQL 18 logins with pg_oauth tokens check shared memory, not these tables (no database
-- is open yet when they are checked): each committed change of what may log in is published
-- there at its commit. See src/authn/login_state.rs and docs/login.md.
CREATE TRIGGER session_login_closed
    AFTER UPDATE OF id, client_id, role, audience, expires_at, revoked_at ON oauth.session
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL)
    EXECUTE FUNCTION oauth.login_session_closed();
CREATE TRIGGER session_login_deleted
    AFTER DELETE ON oauth.session
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > now())
    EXECUTE FUNCTION oauth.login_session_closed();
CREATE TRIGGER client_login_changed
    AFTER INSERT OR UPDATE OF id, active OR DELETE ON oauth.client
    FOR EACH ROW EXECUTE FUNCTION oauth.login_client_changed();
CREATE TRIGGER policy_login_changed
    AFTER INSERT OR UPDATE OR DELETE ON oauth.policy
    FOR EACH ROW EXECUTE FUNCTION oauth.login_client_changed();
CREATE TRIGGER signing_key_login_changed
    AFTER INSERT OR UPDATE OR DELETE ON oauth.signing_key
    FOR EACH ROW EXECUTE FUNCTION oauth.login_signing_key_changed();
CREATE TRIGGER session_login_reset
    AFTER TRUNCATE ON oauth.session FOR EACH STATEMENT EXECUTE FUNCTION oauth.login_reset();
CREATE TRIGGER client_login_reset
    AFTER TRUNCATE ON oauth.client FOR EACH STATEMENT EXECUTE FUNCTION oauth.login_reset();
CREATE TRIGGER policy_login_reset
    AFTER TRUNCATE ON oauth.policy FOR EACH STATEMENT EXECUTE FUNCTION oauth.login_reset();
CREATE TRIGGER signing_key_login_reset
    AFTER TRUNCATE ON oauth.signing_key FOR EACH STATEMENT EXECUTE FUNCTION oauth.login_reset();


-- The objects made above got the upgrading role's default privileges, and so did the
-- sequences when pg_oauth was installed: revoke whatever anyone but the owner was granted on
-- them (finalize.sql does the same at install), before the grants below. Keep this list to
-- the objects this script makes.
DO $acl_new$
DECLARE
    revoke_sql text;
BEGIN
    FOR revoke_sql IN
        SELECT DISTINCT pg_catalog.format('REVOKE ALL ON %s %s FROM %s', o.kind, o.name,
                   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END)
          FROM (SELECT 'TABLE' AS kind, c.oid::pg_catalog.regclass::text AS name, c.relacl AS acl,
                       c.relowner AS owner
                  FROM pg_catalog.pg_class c
                 WHERE c.oid = 'oauth.session'::pg_catalog.regclass
                    OR c.oid = 'oauth.audit_event'::pg_catalog.regclass
                    OR c.oid = 'oauth.exchange_policy'::pg_catalog.regclass
                    OR c.oid = 'oauth.trusted_issuer'::pg_catalog.regclass
                    OR c.oid = 'oauth.stats'::pg_catalog.regclass
                    OR c.oid = 'oauth.console_access'::pg_catalog.regclass
                    OR c.oid IN (SELECT inhrelid FROM pg_catalog.pg_inherits
                                  WHERE inhparent = 'oauth.session'::pg_catalog.regclass)
                UNION ALL
                -- Sequences too: no install script granted or revoked anything on them, so
                -- what default privileges gave them was never recorded in pg_init_privs.
                SELECT 'SEQUENCE', c.oid::pg_catalog.regclass::text, c.relacl, c.relowner
                  FROM pg_catalog.pg_class c
                 WHERE c.relnamespace = 'oauth'::pg_catalog.regnamespace AND c.relkind = 'S'
                UNION ALL
                SELECT 'FUNCTION', p.oid::pg_catalog.regprocedure::text, p.proacl, p.proowner
                  FROM pg_catalog.pg_proc p
                 WHERE p.oid IN ('oauth.session_slot(timestamptz)'::pg_catalog.regprocedure,
                                 'oauth.loading_by_copy()'::pg_catalog.regprocedure,
                                 'oauth.refresh_family_deleted()'::pg_catalog.regprocedure,
                                 'oauth.create_client(text, text[], text[], text, text[], integer, boolean, text, text, integer, jsonb, boolean, boolean, boolean)'::pg_catalog.regprocedure,
                                 'oauth.auth_token(text, text, text, text, text, text, text, text, text, text, text, text, text, text)'::pg_catalog.regprocedure,
                                 'oauth.auth_verify(text, text, text, text, text, text)'::pg_catalog.regprocedure,
                                 'oauth.auth_dpop_nonce()'::pg_catalog.regprocedure,
                                 'oauth.http_protected_resource()'::pg_catalog.regprocedure,
                                 'oauth.postgrest_request_check()'::pg_catalog.regprocedure,
                                 'oauth.session_revoke_exchanged()'::pg_catalog.regprocedure,
                                 'oauth.login_refresh()'::pg_catalog.regprocedure,
                                 'oauth.stats_counters()'::pg_catalog.regprocedure,
                                 'oauth.stats_reset()'::pg_catalog.regprocedure,
                                 'oauth.console_role_problem(text)'::pg_catalog.regprocedure,
                                 'oauth.console_check_role()'::pg_catalog.regprocedure,
                                 'oauth.login_status()'::pg_catalog.regprocedure,
                                 'oauth.login_client_changed()'::pg_catalog.regprocedure,
                                 'oauth.login_reset()'::pg_catalog.regprocedure,
                                 'oauth.login_session_closed()'::pg_catalog.regprocedure,
                                 'oauth.login_signing_key_changed()'::pg_catalog.regprocedure)) AS o
         CROSS JOIN LATERAL pg_catalog.aclexplode(o.acl) AS a
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
         WHERE a.grantee <> o.owner
    LOOP
        EXECUTE revoke_sql;
    END LOOP;
END
$acl_new$;

-- Grants made on oauth.session and oauth.audit_event since installation (what is left on
-- them after the first block of this script) carry over to the new ones; then the old table
-- goes.
DO $carry$
DECLARE
    grant_sql text;
BEGIN
    FOR grant_sql IN
        SELECT pg_catalog.format('GRANT %s%s ON TABLE %s TO %s%s', a.privilege_type,
                                 coalesce(' (' || pg_catalog.quote_ident(g.attname) || ')', ''), g.target,
                                 CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END,
                                 CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
          FROM (SELECT 'oauth.session' AS target, NULL::name AS attname, c.relacl AS acl, c.relowner AS owner
                  FROM pg_catalog.pg_class c WHERE c.oid = 'oauth.session_0_2'::pg_catalog.regclass
                UNION ALL
                SELECT 'oauth.session', at.attname, at.attacl, c.relowner
                  FROM pg_catalog.pg_attribute at JOIN pg_catalog.pg_class c ON c.oid = at.attrelid
                 WHERE at.attrelid = 'oauth.session_0_2'::pg_catalog.regclass AND at.attnum > 0
                UNION ALL
                SELECT 'oauth.audit_event', NULL, pg_catalog.current_setting('pg_oauth.upgrade_view_acl')::pg_catalog.aclitem[],
                       c.relowner
                  FROM pg_catalog.pg_class c WHERE c.oid = 'oauth.audit_event'::pg_catalog.regclass) AS g
         CROSS JOIN LATERAL pg_catalog.aclexplode(g.acl) AS a
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
         WHERE a.grantee <> g.owner
    LOOP
        EXECUTE grant_sql;
    END LOOP;
END
$carry$;
DROP TABLE oauth.session_0_2;

-- Nothing is open to PUBLIC; oauth_admin manages, oauth_app calls.
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
              active, created_at, updated_at, previous_secret_expires_at, introspect_any,
              dpop_bound_access_tokens, tls_client_certificate_bound_access_tokens,
              tls_client_auth_subject_dn, tls_client_auth_san_dns, tls_client_auth_san_uri,
              tls_client_auth_san_ip, tls_client_auth_san_email)
    ON oauth.client TO oauth_admin;
GRANT INSERT (id, secret, grant_types, scope, audience, type, token_format, jwt_alg,
              access_token_expiration, refresh_token, refresh_token_expiration, jwks, active,
              introspect_any, dpop_bound_access_tokens, tls_client_certificate_bound_access_tokens,
              tls_client_auth_subject_dn, tls_client_auth_san_dns, tls_client_auth_san_uri,
              tls_client_auth_san_ip, tls_client_auth_san_email)
    ON oauth.client TO oauth_admin;
GRANT UPDATE (secret, grant_types, scope, audience, type, token_format, jwt_alg,
              access_token_expiration, refresh_token, refresh_token_expiration, jwks, active,
              introspect_any, dpop_bound_access_tokens, tls_client_certificate_bound_access_tokens,
              tls_client_auth_subject_dn, tls_client_auth_san_dns, tls_client_auth_san_uri,
              tls_client_auth_san_ip, tls_client_auth_san_email)
    ON oauth.client TO oauth_admin;
GRANT DELETE ON oauth.client TO oauth_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth.policy TO oauth_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth.console_access TO oauth_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth.exchange_policy TO oauth_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth.trusted_issuer TO oauth_admin;
-- Sessions and refresh grants are the issuance history (kept audit_min_retention past expiry,
-- then removed by oauth.purge_expired): an administrator revokes them, but cannot erase them.
GRANT SELECT ON oauth.session TO oauth_admin;
GRANT UPDATE (revoked_at, revoked_reason) ON oauth.session TO oauth_admin;
GRANT SELECT ON oauth.refresh_family, oauth.refresh_token TO oauth_admin;
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
    oauth.policy_role_problem, oauth.console_role_problem, oauth.loading_by_copy,
    oauth.audit_dropped_events, oauth.login_refresh, oauth.login_status, oauth.stats_counters,
    oauth.stats_reset
    TO oauth_admin;
GRANT SELECT ON oauth.stats TO oauth_admin;
GRANT EXECUTE ON FUNCTION oauth.auth_token, oauth.auth_verify(text), oauth.auth_verify(text, text),
    oauth.auth_verify(text, text, text, text, text, text), oauth.auth_dpop_nonce,
    oauth.auth_revoke, oauth.auth_introspect, oauth.auth_jwks, oauth.auth_metadata,
    oauth.auth_smart_configuration
    TO oauth_app;
-- Check constraints run with the writer's privileges.
GRANT EXECUTE ON FUNCTION oauth.is_string_or_uri, oauth.are_strings_or_uris TO PUBLIC;
GRANT EXECUTE ON FUNCTION oauth.claims, oauth.client_id, oauth.has_scope, oauth.has_any_scope,
    oauth.has_all_scopes, oauth.postgrest_pre_request, oauth.postgrest_request_check
    TO PUBLIC;

-- Backups: every table's rows and the sequences' positions are dumped (finalize.sql says why).
SELECT pg_catalog.pg_extension_config_dump('oauth.client', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.policy', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.console_access', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.exchange_policy', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.trusted_issuer', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.signing_key', '');
DO $dump$
BEGIN
    -- One call per statement: each call updates pg_extension's row.
    FOR slot IN 0..15 LOOP
        PERFORM pg_catalog.pg_extension_config_dump(
            pg_catalog.format('oauth.session_p%s', pg_catalog.lpad(slot::text, 2, '0'))::regclass, '');
    END LOOP;
END
$dump$;
SELECT pg_catalog.pg_extension_config_dump('oauth.refresh_family', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.refresh_token', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.client_assertion_jti', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.fhir_resource_type',
    'WHERE name <> ALL (''{Account,ActivityDefinition,AdverseEvent,AllergyIntolerance,Appointment,AppointmentResponse,AuditEvent,Basic,Binary,BiologicallyDerivedProduct,BodyStructure,Bundle,CapabilityStatement,CarePlan,CareTeam,CatalogEntry,ChargeItem,ChargeItemDefinition,Claim,ClaimResponse,ClinicalImpression,CodeSystem,Communication,CommunicationRequest,CompartmentDefinition,Composition,ConceptMap,Condition,Consent,Contract,Coverage,CoverageEligibilityRequest,CoverageEligibilityResponse,DetectedIssue,Device,DeviceDefinition,DeviceMetric,DeviceRequest,DeviceUseStatement,DiagnosticReport,DocumentManifest,DocumentReference,EffectEvidenceSynthesis,Encounter,Endpoint,EnrollmentRequest,EnrollmentResponse,EpisodeOfCare,EventDefinition,Evidence,EvidenceVariable,ExampleScenario,ExplanationOfBenefit,FamilyMemberHistory,Flag,Goal,GraphDefinition,Group,GuidanceResponse,HealthcareService,ImagingStudy,Immunization,ImmunizationEvaluation,ImmunizationRecommendation,ImplementationGuide,InsurancePlan,Invoice,Library,Linkage,List,Location,Measure,MeasureReport,Media,Medication,MedicationAdministration,MedicationDispense,MedicationKnowledge,MedicationRequest,MedicationStatement,MedicinalProduct,MedicinalProductAuthorization,MedicinalProductContraindication,MedicinalProductIndication,MedicinalProductIngredient,MedicinalProductInteraction,MedicinalProductManufactured,MedicinalProductPackaged,MedicinalProductPharmaceutical,MedicinalProductUndesirableEffect,MessageDefinition,MessageHeader,MolecularSequence,NamingSystem,NutritionOrder,Observation,ObservationDefinition,OperationDefinition,OperationOutcome,Organization,OrganizationAffiliation,Parameters,Patient,PaymentNotice,PaymentReconciliation,Person,PlanDefinition,Practitioner,PractitionerRole,Procedure,Provenance,Questionnaire,QuestionnaireResponse,RelatedPerson,RequestGroup,ResearchDefinition,ResearchElementDefinition,ResearchStudy,ResearchSubject,RiskAssessment,RiskEvidenceSynthesis,Schedule,SearchParameter,ServiceRequest,Slot,Specimen,SpecimenDefinition,StructureDefinition,StructureMap,Subscription,Substance,SubstanceNucleicAcid,SubstancePolymer,SubstanceProtein,SubstanceReferenceInformation,SubstanceSourceMaterial,SubstanceSpecification,SupplyDelivery,SupplyRequest,Task,TerminologyCapabilities,TestReport,TestScript,ValueSet,VerificationResult,VisionPrescription}''::text[])');
SELECT pg_catalog.pg_extension_config_dump('oauth.auth_failure', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.auth_failure_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.source_throttle', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.client_lockout', '');
SELECT pg_catalog.pg_extension_config_dump('oauth.audit_dropped_seq', '');

-- Descriptions: every function, table, view, sequence and column of schema oauth (\df+,
-- \d+ and \dv+ explain them). Functions marked "Internal" are called by pg_oauth itself
-- (triggers, constraints, the generated HTTP endpoints); callers should not use them.
-- The same block ends the upgrade scripts; the upgrade test compares descriptions.

COMMENT ON FUNCTION oauth.auth_token IS
    'Token endpoint (RFC 6749 §4.4 client_credentials, §6 refresh_token, RFC 8693 token exchange with subject_token, actor_token and their types): authenticates the client by secret or client_assertion (RFC 7523) and returns the §5.1 JSON response; with a dpop proof (RFC 9449) the access token is bound to its key (token_type DPoP). Errors raise with the OAuth error code first in the message.';
COMMENT ON FUNCTION oauth.auth_verify(text) IS
    'Verify an access token (opaque or JWT): its claims as jsonb, or an invalid_token error (expired, revoked, unknown, bad signature).';
COMMENT ON FUNCTION oauth.auth_verify(text, text) IS
    'Verify an access token as auth_verify(token) does, and require audience to be in its aud (RFC 8707).';
COMMENT ON FUNCTION oauth.auth_verify(text, text, text, text, text, text) IS
    'Verify an access token with what binds it to its holder: a DPoP proof (RFC 9449 §7.1) with the method and public URL of the request (dpop, htm, htu), and/or the TLS client certificate it came with (RFC 8705 §3; PEM, URL-escaped PEM or base64 DER). A DPoP-bound token needs a fresh proof by its key, carrying the token''s hash, each accepted once; a certificate-bound token needs its certificate. A NULL dpop presents the token as a bearer token. Example: auth_verify(token, dpop => NULL, htm => NULL, htu => NULL, client_certificate => pem).';
COMMENT ON FUNCTION oauth.auth_dpop_nonce IS
    'The DPoP nonce (RFC 9449 §8) proofs must carry now, for a resource server''s DPoP-Nonce header; NULL while pg_oauth.dpop_nonce is off.';
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
    'Register a client with a generated secret and return the secret (shown once; only its argon2id hash is stored). One argument per column an administrator may write (client_type is the column type); one left out gets the column''s default.';
COMMENT ON FUNCTION oauth.rotate_client_secret IS
    'Replace a client''s secret with a generated one and return it (once); the previous secret keeps working for grace (default 1 hour).';
COMMENT ON FUNCTION oauth.ensure_signing_keys IS
    'Make sure the algorithm (default pg_oauth.default_jwt_alg) has an active and a next signing key; returns the active kid.';
COMMENT ON FUNCTION oauth.rotate_signing_key IS
    'Rotate one algorithm''s keys: next becomes active, active is retired (published until its tokens expire), a new next is made; returns the new active kid.';
COMMENT ON FUNCTION oauth.purge_expired IS
    'Delete expired refresh tokens and families, assertion jtis, old failures, throttle and lockout rows (at most max_rows per call) and empty whole oauth.session partitions whose tokens all expired, keeping retention (at least pg_oauth.audit_min_retention) of audit trail. Waits for no lock longer than 50 ms; run it in a transaction of its own.';
COMMENT ON FUNCTION oauth.audit_dropped_events IS
    'How many deferred audit writes (failed authentications, refresh family revocations of failed requests) could not be carried out since installation; see the server log for each.';
COMMENT ON FUNCTION oauth.policy_role_problem IS
    'Why a role may not be a policy role (tokens act as it), or NULL: missing, privileged, or a member of a privileged role.';
COMMENT ON FUNCTION oauth.create_http_endpoints IS
    'Create the PostgREST endpoints token, revoke, introspect, jwks, metadata and smart_configuration in api_schema for anon_role, and let authenticator_role run postgrest_pre_config. Run as the owner of pg_oauth.';
COMMENT ON FUNCTION oauth.postgrest_pre_config IS
    'PostgREST db-pre-config: sets PostgREST''s jwt-secret to the published JWK Set (plus HS256 secrets while HS256 is in use). Executable by the authenticator role only.';
COMMENT ON FUNCTION oauth.postgrest_pre_request IS
    'PostgREST db-pre-request: answers 401 with an RFC 6750 or RFC 9449 challenge when the request''s token was revoked, deleted, not issued here, or DPoP-bound without a valid proof; a DPoP request (Authorization: DPoP) takes its token''s claims and role.';
COMMENT ON FUNCTION oauth.postgrest_request_check IS
    'Internal (postgrest_pre_request): NULL, the claims of a verified DPoP request, or the refusal (error, status, headers) for the current PostgREST request; spends its DPoP proof.';
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
COMMENT ON FUNCTION oauth.http_protected_resource IS
    'Internal: RFC 9728 metadata of the API the tokens protect, behind the generated PostgREST function protected_resource, with caching headers.';
COMMENT ON FUNCTION oauth.http_smart_configuration IS
    'Internal: the SMART configuration behind the generated PostgREST function smart_configuration, with caching headers.';
COMMENT ON FUNCTION oauth.http_parameter_names IS
    'Internal (create_http_endpoints): the OAuth parameters the generated endpoints accept as form fields.';
COMMENT ON FUNCTION oauth.request_token_problem IS
    'Internal (the pre-request hook of 0.2.0): why the current request''s bearer token may not be used, or NULL.';
COMMENT ON FUNCTION oauth.loading_by_copy IS
    'Internal (trigger on oauth.policy): whether the running statement is a COPY, as when a dump is restored.';
COMMENT ON FUNCTION oauth.session_slot IS
    'Internal (oauth.purge_expired): the partition of oauth.session tokens issued at a time go to (pg_oauth.session_partition_interval).';
COMMENT ON FUNCTION oauth.audit_min_retention_secs IS
    'Internal (oauth.purge_expired): pg_oauth.audit_min_retention in seconds.';
COMMENT ON FUNCTION oauth.is_string_or_uri IS
    'Internal (check constraints): whether value is an RFC 7519 StringOrURI (no '':'' unless it is a URI).';
COMMENT ON FUNCTION oauth.are_strings_or_uris IS
    'Internal (check constraints): whether every item is an RFC 7519 StringOrURI.';
COMMENT ON FUNCTION oauth.client_before_write IS
    'Internal (trigger on oauth.client): replaces a plaintext secret by its argon2id hash before it is stored; checks imported hashes; makes a deactivation or deletion wait for tokens being issued to the client.';
COMMENT ON FUNCTION oauth.client_close_sessions IS
    'Internal (trigger on oauth.client): deactivating or deleting a client revokes its sessions and refresh grants (kept as history until oauth.purge_expired removes them); deleting it deletes its policy.';
COMMENT ON FUNCTION oauth.client_ensure_signing_keys IS
    'Internal (trigger on oauth.client): a client that gets JWTs makes its algorithm''s keys exist, so they are published before they sign (not for rows loaded with COPY, such as a restore).';
COMMENT ON FUNCTION oauth.refresh_family_deleted IS
    'Internal (trigger on oauth.refresh_family): deleting a refresh grant deletes its refresh tokens.';
COMMENT ON FUNCTION oauth.refresh_family_revoked IS
    'Internal (trigger on oauth.refresh_family): revoking a refresh grant revokes every access token issued from it.';
COMMENT ON FUNCTION oauth.revocation_reason IS
    'Internal (trigger on oauth.session and oauth.refresh_family): a revocation without a reason records who made it.';
COMMENT ON FUNCTION oauth.policy_check_role IS
    'Internal (trigger on oauth.policy): refuses a policy for a client that does not exist (rows loaded with COPY excepted) or whose role tokens may not act as (see policy_role_problem).';
COMMENT ON FUNCTION oauth.console_check_role IS
    'Internal (trigger on oauth.console_access): refuses a row for a client that does not exist, a role the console may not act as (see console_role_problem), or one the writer is not a member of; rows loaded with COPY may precede their client.';
COMMENT ON FUNCTION oauth.console_role_problem IS
    'Why the console may not act as a role, or NULL: as policy_role_problem, except that members of oauth_admin (and so of oauth_app) are allowed.';
COMMENT ON TABLE oauth.console_access IS
    'Which clients'' tokens sign in to the console (/console on the listener), and the role their console actions run as (with that role''s privileges, as its SQL would).';
COMMENT ON COLUMN oauth.console_access.client_id IS 'The client (deleted with it).';
COMMENT ON COLUMN oauth.console_access.role IS 'The role its console actions run as: must exist, may be a member of oauth_admin but not privileged otherwise; only its members may name it.';
COMMENT ON COLUMN oauth.console_access.created_at IS 'When the row was written.';
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
COMMENT ON COLUMN oauth.client.dpop_bound_access_tokens IS
    'Whether the client must present a DPoP proof (RFC 9449 §5.2) at the token endpoint, so that every access token it gets is bound to its key.';
COMMENT ON COLUMN oauth.client.tls_client_certificate_bound_access_tokens IS
    'Whether the client''s access tokens are bound to the TLS client certificate it presents at the token endpoint (RFC 8705 §3; cnf.x5t#S256); it must present one.';
COMMENT ON COLUMN oauth.client.tls_client_auth_subject_dn IS
    'tls_client_auth (RFC 8705 §2.1): the subject DN (RFC 4514) of the certificate, issued by a CA in pg_oauth.tls_client_ca_file, the client authenticates with. At most one tls_client_auth_* column is set.';
COMMENT ON COLUMN oauth.client.tls_client_auth_san_dns IS 'tls_client_auth (RFC 8705 §2.1): a dNSName subject alternative name of the client''s CA-issued certificate.';
COMMENT ON COLUMN oauth.client.tls_client_auth_san_uri IS 'tls_client_auth (RFC 8705 §2.1): a uniformResourceIdentifier subject alternative name of the client''s CA-issued certificate.';
COMMENT ON COLUMN oauth.client.tls_client_auth_san_ip IS 'tls_client_auth (RFC 8705 §2.1): an iPAddress subject alternative name of the client''s CA-issued certificate.';
COMMENT ON COLUMN oauth.client.tls_client_auth_san_email IS 'tls_client_auth (RFC 8705 §2.1): an rfc822Name subject alternative name of the client''s CA-issued certificate.';
COMMENT ON COLUMN oauth.client.introspect_any IS
    'Whether this client (a resource server) may introspect tokens issued to other clients over HTTP; others see only their own.';

COMMENT ON TABLE oauth.exchange_policy IS
    'Token exchange (RFC 8693): client_id may exchange the access tokens issued to subject_client_id for tokens of its own. No row, no exchange.';
COMMENT ON COLUMN oauth.exchange_policy.client_id IS 'The client that exchanges (it authenticates at the token endpoint and gets the new token).';
COMMENT ON COLUMN oauth.exchange_policy.subject_client_id IS 'The client whose tokens it may exchange (the subject token''s client_id).';
COMMENT ON COLUMN oauth.exchange_policy.scope IS 'The most the new token may have, within the subject token''s scopes; NULL: the subject token''s scopes.';
COMMENT ON COLUMN oauth.exchange_policy.audience IS 'The audiences the new token may have; NULL: those client_id may have.';
COMMENT ON COLUMN oauth.exchange_policy.impersonation IS 'Whether client_id may exchange without an actor_token (impersonation: the new token does not say who acts); with one, the new token carries act (delegation).';
COMMENT ON COLUMN oauth.exchange_policy.created_at IS 'When the row was written.';
COMMENT ON TABLE oauth.trusted_issuer IS
    'Token exchange (RFC 8693) of tokens other issuers sign: one row per issuer, its keys by value, how its tokens are checked, and the pg_oauth client its subjects stand for (whose oauth.exchange_policy rows and policy role apply).';
COMMENT ON COLUMN oauth.trusted_issuer.issuer IS 'The iss its tokens carry, exactly.';
COMMENT ON COLUMN oauth.trusted_issuer.jwks IS 'Its public keys (a JWK Set, by value; private members are refused). Replace them to rotate; nothing is fetched.';
COMMENT ON COLUMN oauth.trusted_issuer.algorithms IS 'The JWS algorithms its tokens may be signed with (asymmetric only).';
COMMENT ON COLUMN oauth.trusted_issuer.audiences IS 'A token''s aud must name one of these (this server, as the issuer knows it).';
COMMENT ON COLUMN oauth.trusted_issuer.max_token_age IS 'Seconds since its iat a token is accepted for, whatever its exp.';
COMMENT ON COLUMN oauth.trusted_issuer.token_type IS 'The typ its tokens'' header must carry (e.g. at+jwt); NULL: any.';
COMMENT ON COLUMN oauth.trusted_issuer.subject_client_id IS 'The pg_oauth client its subjects stand for: exchanges need an oauth.exchange_policy row for it, and the new token acts as its policy role.';
COMMENT ON COLUMN oauth.trusted_issuer.scope IS 'The most a token exchanged from this issuer''s may have (narrowed further by the exchange policy).';
COMMENT ON COLUMN oauth.trusted_issuer.created_at IS 'When the row was written.';
COMMENT ON VIEW oauth.stats IS
    'pg_oauth''s counters since the server started (or oauth.stats_reset()): tokens issued and signed, refusals by endpoint and OAuth error, failed client authentications by reason, argon2 work, DPoP proofs, verifications, revocations, introspections, PostgreSQL 18 logins. One row per counter; labels as jsonb.';
COMMENT ON COLUMN oauth.stats.database IS 'The database counted in; NULL: PostgreSQL 18 logins (no database is chosen yet) and databases beyond the 16 counted on their own.';
COMMENT ON COLUMN oauth.stats.metric IS 'The counter''s family (docs/operations.md, Metrics); /metrics exposes it as pg_oauth_<metric>_total.';
COMMENT ON COLUMN oauth.stats.labels IS 'The counter''s labels, e.g. {"grant": "client_credentials", "format": "jwt"}.';
COMMENT ON COLUMN oauth.stats.value IS 'Its count since the server started or oauth.stats_reset() (microseconds for http_request_duration_microseconds_sum).';
COMMENT ON COLUMN oauth.stats.description IS 'What the family counts.';
COMMENT ON FUNCTION oauth.stats_counters IS
    'Internal (the view oauth.stats): every counter in shared memory, by database oid.';
COMMENT ON FUNCTION oauth.stats_reset IS
    'Sets this database''s pg_oauth counters (oauth.stats) to zero, as pg_stat_reset() does for PostgreSQL''s. oauth_admin only.';
COMMENT ON FUNCTION oauth.login_session_closed IS
    'Internal (triggers on oauth.session): a revoked, changed or deleted session''s token no longer logs in to PostgreSQL 18, from the commit on.';
COMMENT ON FUNCTION oauth.login_client_changed IS
    'Internal (triggers on oauth.client and oauth.policy): the role a client''s tokens log in to PostgreSQL 18 as follows its policy, and a deactivated or deleted client''s tokens no longer log in, from the commit on.';
COMMENT ON FUNCTION oauth.login_signing_key_changed IS
    'Internal (trigger on oauth.signing_key): the keys PostgreSQL 18 logins verify tokens with follow the table, from the commit on.';
COMMENT ON FUNCTION oauth.login_reset IS
    'Internal (TRUNCATE triggers): truncating a table logins depend on refuses logins until the login worker rebuilds their state.';
COMMENT ON FUNCTION oauth.login_refresh IS
    'Rebuilds this database''s state of PostgreSQL 18 logins with pg_oauth tokens in shared memory (the login worker does at start); waits at most lock_timeout for writers. Returns what it did.';
COMMENT ON FUNCTION oauth.login_status IS
    'What PostgreSQL 18 logins with pg_oauth tokens can check now, per issuing database: its issuer and the keys, clients and live tokens published.';
COMMENT ON FUNCTION oauth.session_revoke_exchanged IS
    'Internal trigger: revoking a token revokes the tokens exchanged from it (RFC 8693).';
COMMENT ON COLUMN oauth.session.subject IS 'An exchanged token (RFC 8693): its subject (sub), the subject token''s; NULL when it is the client.';
COMMENT ON COLUMN oauth.session.act IS 'An exchanged token: the actor (act claim, RFC 8693 §4.1), NULL under impersonation.';
COMMENT ON COLUMN oauth.session.exchanged_from IS 'An exchanged token: the session of the subject token; revoking that one revokes this one.';
COMMENT ON TABLE oauth.policy IS
    'Access policies: the database role (PostgREST role claim) a client''s tokens act as.';
COMMENT ON COLUMN oauth.policy.client_id IS 'The client (deleted with it).';
COMMENT ON COLUMN oauth.policy.role IS 'The role its tokens act as: must exist, not be privileged nor a member of a privileged role.';
COMMENT ON COLUMN oauth.policy.created_at IS 'When the policy was written.';

COMMENT ON TABLE oauth.session IS
    'Issued access tokens (id = jti), in 16 partitions by issue time. Revoke with UPDATE ... SET revoked_at = now() or DELETE.';
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
COMMENT ON COLUMN oauth.session.slot IS
    'The partition (0-15): (issue time of id / pg_oauth.session_partition_interval) mod 16. oauth.purge_expired empties a partition whole once all its tokens expired past the retention.';
DO $comments$
BEGIN
    FOR slot IN 0..15 LOOP
        EXECUTE pg_catalog.format('COMMENT ON TABLE oauth.%I IS %L', 'session_p' || pg_catalog.lpad(slot::text, 2, '0'),
                                  pg_catalog.format('Partition %s of oauth.session (sessions whose slot is %s); use oauth.session.', slot, slot));
    END LOOP;
END
$comments$;
COMMENT ON COLUMN oauth.session.jkt IS 'A DPoP-bound token (RFC 9449): the SHA-256 JWK thumbprint (RFC 7638) of the key it is bound to; NULL for a bearer token.';
COMMENT ON COLUMN oauth.session.x5t IS 'A certificate-bound token (RFC 8705): the SHA-256 thumbprint of the client certificate it is bound to (x5t#S256); NULL otherwise.';
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
