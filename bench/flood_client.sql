-- The client beside the flood (bench/flood.sql): the same calls as issuance/opaque.sql, with
-- a 43-character secret.
SELECT oauth.auth_token('client_credentials', 'bench-flood', 'Kq3vZ8yT1bW6nR4pL0sX9dF2gH7jM5cV-aE_uIoP3kQ', 'read');
