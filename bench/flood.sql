-- A flood of random unknown client ids (each a dummy argon2id verification and a failure
-- record); errors are caught so pgbench keeps going.
DO $$
BEGIN
    PERFORM oauth.auth_token('client_credentials', 'flood-' || pg_catalog.gen_random_uuid(), 'guess');
EXCEPTION WHEN others THEN NULL;
END
$$;
