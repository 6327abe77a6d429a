-- The audit trail (failed authentications, throttled sources, lockouts, and a view over
-- everything) and housekeeping.

-- Failed client authentications, for auditing and brute-force lockout. Never the presented
-- secret or assertion. client_id is as presented (unknown ids too), cut to 255 characters.
CREATE TABLE oauth.auth_failure (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    client_id   text NOT NULL,
    source      text NOT NULL,
    reason      text NOT NULL
);

CREATE INDEX auth_failure_client_id_idx ON oauth.auth_failure (client_id, at);


-- Requests refused because their source had too many failed authentications in its window
-- (pg_oauth.source_failure_limit): one row per source and window, however many ids the
-- source tried, so a flood of invented client ids adds O(1) rows. `refused` is written at
-- the 1st, 2nd, 4th, 8th ... refusal: at least half the true count.
CREATE TABLE oauth.source_throttle (
    source        text NOT NULL,
    window_start  timestamptz NOT NULL,
    first_at      timestamptz NOT NULL DEFAULT now(),
    last_at       timestamptz NOT NULL DEFAULT now(),
    refused       bigint NOT NULL,
    PRIMARY KEY (source, window_start)
);


-- Lockout state per (client id, source): failures counted in the current window, and the
-- end of a lockout. A successful authentication from the source deletes its row; so may a
-- DBA, to end a lockout early.
CREATE TABLE oauth.client_lockout (
    client_id     text NOT NULL,
    source        text NOT NULL,
    failures      integer NOT NULL,
    window_start  timestamptz NOT NULL,
    locked_until  timestamptz,
    PRIMARY KEY (client_id, source)
);

-- Deferred audit writes (a failure recorded although its request failed) that could not
-- be carried out, e.g. with no background worker slot: counted, never lost silently.
CREATE SEQUENCE oauth.audit_dropped_seq;
CREATE FUNCTION oauth.audit_dropped_events() RETURNS bigint
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM oauth.audit_dropped_seq $$;

-- The audit trail in one place, without token material: issuance and revocation (from the
-- sessions and refresh grants), failed authentications and lockouts. Rows live as long as
-- their source rows (see oauth.purge_expired).
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


-- Housekeeping: delete what has expired, at most max_rows rows one by one per call (so a
-- scheduled call has a bounded cost; call again while it returns max_rows). Sessions and
-- refresh tokens are kept for `retention` after they expire (the audit trail), failures for
-- `retention` after they happened; assertion jtis go as soon as they expire. `retention`
-- may not be shorter than pg_oauth.audit_min_retention (default 1 day).
--
-- Sessions go a partition at a time (tokens.sql): a partition whose tokens have all expired
-- before the cutoff is emptied whole with TRUNCATE, after the same check under its lock;
-- its rows are not counted against max_rows (`deleted` counts them by PostgreSQL's estimate,
-- and a NOTICE names the partition). Rows expired before the cutoff in the partition next in
-- turn are deleted one by one: they are there only when some tokens live longer than the
-- partitions take to turn (16 intervals), or from before an interval change or the 0.3.0
-- upgrade. No step waits for a lock longer than lock_timeout (the SET below): what is in use
-- is left for the next call, so nothing queues behind the purge for longer than that. Run it
-- in a transaction of its own (as pg_cron does): the partitions it emptied stay locked until
-- that transaction ends.
CREATE FUNCTION oauth.purge_expired(max_rows integer DEFAULT 10000,
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
