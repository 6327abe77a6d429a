-- Issued tokens: access token sessions, signing keys, refresh token families.

-- One row per issued access token. No foreign key to oauth.client on purpose: the FK
-- check would share-lock the client row on every issuance; triggers on oauth.client
-- close sessions instead.
--
-- Sixteen partitions, oauth.session_p00 .. oauth.session_p15, by the time a token was issued:
-- slot = (issue time / pg_oauth.session_partition_interval) mod 16, read from the UUIDv7 id
-- (src/store/session.rs). Tokens are issued into one partition at a time, and
-- oauth.purge_expired empties a partition whose tokens have all expired past the audit
-- retention with TRUNCATE: expiry costs no per-row delete, no dead rows, no vacuum, and no
-- lock on the partition tokens are being issued into.
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


-- Signing keys for JWT access tokens, per algorithm: `next` (published, not yet used),
-- `active` (signs), `retired` (published and accepted until expires_at, when every token
-- it signed has expired). private_key is PKCS#8 DER (HS256: the raw 256-bit secret).
CREATE TABLE oauth.signing_key (
    kid           text PRIMARY KEY,
    alg           text NOT NULL,
    private_key   bytea NOT NULL,
    public_jwk    jsonb,
    state         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    activated_at  timestamptz,
    retired_at    timestamptz,
    expires_at    timestamptz,

    CONSTRAINT signing_key_alg_supported
        CHECK (alg IN ('ES256', 'EdDSA', 'RS256', 'PS256', 'HS256')),
    CONSTRAINT signing_key_state_valid
        CHECK (state IN ('next', 'active', 'retired')),
    CONSTRAINT signing_key_public_jwk
        CHECK ((alg = 'HS256') = (public_jwk IS NULL)),
    CONSTRAINT signing_key_retired_expires
        CHECK ((state = 'retired') = (expires_at IS NOT NULL))
);

CREATE UNIQUE INDEX signing_key_one_active ON oauth.signing_key (alg) WHERE state = 'active';
CREATE UNIQUE INDEX signing_key_one_next ON oauth.signing_key (alg) WHERE state = 'next';


-- Refresh tokens rotate on every use; all tokens descending from one grant form a family.
-- Reusing a spent token revokes the whole family and its access tokens (RFC 9700 §4.14).
CREATE TABLE oauth.refresh_family (
    id          uuid PRIMARY KEY,
    client_id   text NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    revoked_reason text
);

CREATE INDEX refresh_family_client_id_idx ON oauth.refresh_family (client_id);

CREATE TABLE oauth.refresh_token (
    id          uuid PRIMARY KEY,
    -- No foreign key (pg_restore --jobs loads tables in any order): deleting a family deletes
    -- its tokens by trigger (finalize.sql), and only pg_oauth writes tokens.
    family_id   uuid NOT NULL,
    client_id   text NOT NULL,
    token_hash  bytea NOT NULL,
    scope       text[] NOT NULL,
    audience    text[] NOT NULL,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

CREATE INDEX refresh_token_family_id_idx ON oauth.refresh_token (family_id);
CREATE INDEX refresh_token_expires_at_idx ON oauth.refresh_token USING brin (expires_at)
    WITH (autosummarize = on);
CREATE INDEX session_family_id_idx ON oauth.session (family_id) WHERE family_id IS NOT NULL;
CREATE INDEX session_exchanged_from_idx ON oauth.session (exchanged_from)
    WHERE exchanged_from IS NOT NULL;
