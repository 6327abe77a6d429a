-- pg_oauth, first: its roles and the helpers its CHECK constraints use. The tables follow,
-- one file per concern (clients, tokens, smart, audit; http for the PostgREST helpers), then
-- every function, then finalize.sql: triggers, privileges, descriptions. Every table is owned
-- by the extension owner and closed to PUBLIC (finalize.sql).

-- Roles are cluster-wide, so they may already exist from another database: then their members
-- administer and call pg_oauth in this database too (if they may connect to it). Say so:
-- docs/reference.md, "Roles and privileges", says how to keep databases apart.
DO $roles$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname IN ('oauth_admin', 'oauth_app')) THEN
        RAISE WARNING 'pg_oauth: the roles oauth_admin and oauth_app exist already (pg_oauth is in another database of this cluster, or they were made before)'
            USING DETAIL = 'Roles are cluster-wide: their members administer (oauth_admin) and call (oauth_app) pg_oauth in every database that has it and that they may connect to.',
                  HINT = 'To keep databases apart, REVOKE CONNECT ON DATABASE ... FROM PUBLIC and GRANT CONNECT to each database''s own roles.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'oauth_admin') THEN
        CREATE ROLE oauth_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'oauth_app') THEN
        CREATE ROLE oauth_app NOLOGIN;
    END IF;
END
$roles$;

-- RFC 7519 StringOrURI: client ids become the JWT `sub`, audiences its `aud`, and a value
-- containing ':' must then be a URI (JOSE libraries, PostgREST's included, refuse others).
CREATE FUNCTION oauth.is_string_or_uri(value text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT strpos(value, ':') = 0
        OR value ~ '^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~:/?#@!$&''()*+,;=%\[\]-]*$'
$$;

CREATE FUNCTION oauth.are_strings_or_uris(items text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NOT EXISTS (SELECT FROM unnest(items) AS i WHERE NOT oauth.is_string_or_uri(i))
$$;
