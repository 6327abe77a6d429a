-- HTTP floors for `make bench` (run in the throwaway database PostgREST serves, after
-- examples/postgrest/setup.sql): what PostgREST costs on its own on this machine.
\set ON_ERROR_STOP on
CREATE SCHEMA bench;
CREATE TABLE bench.floor_session (LIKE oauth.session_p00 INCLUDING ALL);

-- The ceiling: an RPC that does nothing (GET, read-only transaction).
CREATE FUNCTION api.bench_noop() RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN 1; END $$;

-- The floor: a form-encoded POST whose function commits one session-shaped row, as
-- oauth.http_token does, and nothing else (same wrapper style: plpgsql, SECURITY DEFINER).
CREATE FUNCTION api.bench_insert(grant_type text DEFAULT NULL, scope text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO bench.floor_session (id, client_id, token_hash, format, scope, audience, role, issued_at, expires_at, slot)
    VALUES (gen_random_uuid(), 'bench-client', sha256(gen_random_uuid()::text::bytea), 'opaque', ARRAY[scope],
            '{http://127.0.0.1:3000}', NULL, now(), now() + interval '1 hour', 0);
    RETURN jsonb_build_object('grant_type', grant_type);
END $$;
GRANT EXECUTE ON FUNCTION api.bench_noop(), api.bench_insert(text, text) TO anon;
NOTIFY pgrst, 'reload schema';
