-- The audit trail, brute-force lockout and housekeeping, as a DBA sees them.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET pg_oauth.lockout_threshold = 2;
INSERT INTO oauth.client (id, secret, scope) VALUES ('audit-client', 'right', '{read}');

-- Two wrong secrets (the second locks the client out for this source)...
SELECT oauth.auth_token('client_credentials', 'audit-client', 'wrong-1');
SELECT oauth.auth_token('client_credentials', 'audit-client', 'wrong-2');
-- ...so the right secret is refused, with how long to wait and what to do.
DO $$
DECLARE
    message text;
    hint text;
BEGIN
    PERFORM oauth.auth_token('client_credentials', 'audit-client', 'right');
EXCEPTION WHEN invalid_password THEN
    GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE E'%\nHINT: %', regexp_replace(message, '\d+ s$', 'N s'), hint;
END
$$;
SELECT client_id, source, regexp_replace(reason, 'until \S+', 'until T') AS reason
  FROM oauth.auth_failure WHERE client_id = 'audit-client' ORDER BY id;
SELECT client_id, source, failures, locked_until > now() AS locked FROM oauth.client_lockout;

-- An administrator ends the lockout; success forgives the failures.
DELETE FROM oauth.client_lockout WHERE client_id = 'audit-client';
SELECT oauth.auth_token('client_credentials', 'audit-client', 'right') ->> 'token_type' AS token_type;
SELECT count(*) AS lockout_rows FROM oauth.client_lockout;

-- Revocations say why; the audit view has every event, without token material.
SELECT oauth.auth_revoke(oauth.auth_token('client_credentials', 'audit-client', 'right') ->> 'access_token');
SELECT event, regexp_replace((detail - 'expires_at')::text, 'until [^"]+', 'until T') AS detail
  FROM oauth.audit_event WHERE client_id = 'audit-client' ORDER BY at, event;

-- Housekeeping: bounded, with a count per table.
SELECT relation, deleted FROM oauth.purge_expired(10, interval '100 years');
SELECT * FROM oauth.purge_expired(0);
SELECT * FROM oauth.purge_expired(10, interval '-1 day');
RESET pg_oauth.lockout_threshold;
