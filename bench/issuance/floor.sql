-- The floor: one durable INSERT of a session-shaped row into a table shaped like oauth.session.
INSERT INTO bench.floor_session (id, client_id, token_hash, format, scope, audience, role, issued_at, expires_at, slot)
VALUES (gen_random_uuid(), 'bench-opaque', sha256(gen_random_uuid()::text::bytea), 'opaque', '{read}',
        '{https://issuer.bench}', NULL, now(), now() + interval '1 hour', 0);
