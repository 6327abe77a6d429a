-- pg_oauth, first: its roles and the helpers its CHECK constraints use. The tables follow,
-- one file per concern (clients, tokens, smart, audit; http for the PostgREST helpers), then
-- every function, then finalize.sql: triggers, privileges, descriptions. Every table is owned
-- by the extension owner and closed to PUBLIC (finalize.sql).

-- Roles are cluster-wide, so they may already exist from another database.
DO $roles$
BEGIN
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
