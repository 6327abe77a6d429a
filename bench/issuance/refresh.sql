-- The refresh grant: each client exchanges its current refresh token for the next one.
UPDATE bench.refresh_chain
   SET rt = oauth.auth_token('refresh_token', 'bench-refresh', 'benchsecret', refresh_token => rt) ->> 'refresh_token'
 WHERE id = :client_id;
