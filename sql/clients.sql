-- Clients and their policies (the role a client's tokens act as).

CREATE TABLE oauth.client (
    id                          text PRIMARY KEY,
    secret                      text,
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    grant_types                 text[] NOT NULL DEFAULT '{client_credentials}',
    scope                       text[] NOT NULL DEFAULT '{}',
    audience                    text[] NOT NULL DEFAULT '{}',
    type                        text,
    token_format                text NOT NULL DEFAULT 'opaque',
    jwt_alg                     text,
    access_token_expiration     integer NOT NULL DEFAULT 3600,
    refresh_token               boolean NOT NULL DEFAULT false,
    refresh_token_expiration    integer NOT NULL DEFAULT 86400,
    jwks                        jsonb,
    active                      boolean NOT NULL DEFAULT true,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    introspect_any              boolean NOT NULL DEFAULT false,
    dpop_bound_access_tokens    boolean NOT NULL DEFAULT false,
    tls_client_certificate_bound_access_tokens boolean NOT NULL DEFAULT false,
    tls_client_auth_subject_dn  text,
    tls_client_auth_san_dns     text,
    tls_client_auth_san_uri     text,
    tls_client_auth_san_ip      text,
    tls_client_auth_san_email   text,

    CONSTRAINT client_id_valid
        CHECK (length(id) BETWEEN 1 AND 255 AND id !~ '[[:cntrl:]]'),
    CONSTRAINT client_id_string_or_uri
        CHECK (oauth.is_string_or_uri(id)),
    CONSTRAINT grant_types_supported
        CHECK (grant_types <@ ARRAY['client_credentials', 'refresh_token',
                                    'urn:ietf:params:oauth:grant-type:token-exchange']),
    CONSTRAINT scope_tokens_valid
        -- RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        -- (joined with newlines, which no token may contain; NULL elements become empty)
        CHECK (cardinality(scope) = 0
               OR array_to_string(scope, E'\n', '') ~ '^[\x21\x23-\x5b\x5d-\x7e]+(\n[\x21\x23-\x5b\x5d-\x7e]+)*$'),
    CONSTRAINT audience_values_valid
        CHECK (cardinality(audience) = 0
               OR (array_to_string(audience, E'\n', '') ~ '^[\x21-\x7e]+(\n[\x21-\x7e]+)*$'
                   AND oauth.are_strings_or_uris(audience))),
    CONSTRAINT type_supported
        CHECK (type IS NULL OR type = 'smart-app'),
    CONSTRAINT token_format_supported
        CHECK (token_format IN ('opaque', 'jwt')),
    CONSTRAINT jwt_alg_supported
        CHECK (jwt_alg IS NULL OR jwt_alg IN ('ES256', 'EdDSA', 'RS256', 'PS256', 'HS256')),
    CONSTRAINT access_token_expiration_positive
        CHECK (access_token_expiration > 0),
    CONSTRAINT refresh_token_expiration_positive
        CHECK (refresh_token_expiration > 0),
    CONSTRAINT jwks_is_jwk_set
        CHECK (jwks IS NULL OR jsonb_typeof(jwks -> 'keys') = 'array'),
    -- Only public keys: a private member (or a symmetric key) must never be stored here.
    CONSTRAINT jwks_public_only
        CHECK (jwks IS NULL OR NOT jsonb_path_exists(jwks,
            '$.keys[*] ? (exists(@.d) || exists(@.p) || exists(@.q) || exists(@.k) || @.kty == "oct")')),
    -- RFC 8705 §2.1.2: a tls_client_auth client registers exactly one of the five names.
    CONSTRAINT tls_client_auth_one_name
        CHECK (num_nonnulls(tls_client_auth_subject_dn, tls_client_auth_san_dns,
                            tls_client_auth_san_uri, tls_client_auth_san_ip,
                            tls_client_auth_san_email) <= 1),
    CONSTRAINT previous_secret_has_expiry
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);


-- A client's access: the database role its tokens act as. No row, no role. No foreign key
-- to oauth.client: pg_restore --jobs loads tables in any order, and a foreign key would refuse
-- a policy loaded before its client. The policy_check_role trigger requires the client
-- (except for rows loaded with COPY), and deleting a client deletes its policy (finalize.sql).
CREATE TABLE oauth.policy (
    client_id   text PRIMARY KEY,
    role        name NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The console (/console on the listener): which clients' tokens sign in to it, and the role
-- each one's actions there run as (src/flow/console.rs). Unlike a policy role, it may be a
-- member of oauth_admin (that is the point); every other privilege a policy role may not
-- have it may not have either, and only a member of the role may name it. No row, no
-- console. No foreign key, as for oauth.policy.
CREATE TABLE oauth.console_access (
    client_id   text PRIMARY KEY,
    role        name NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);


-- Token exchange (RFC 8693): which client may exchange the tokens issued to which client, and
-- for what. No row, no exchange. No foreign keys, as for oauth.policy; deleting a client
-- deletes the rows that name it (finalize.sql).
CREATE TABLE oauth.exchange_policy (
    client_id           text NOT NULL,
    subject_client_id   text NOT NULL,
    scope               text[],
    audience            text[],
    impersonation       boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, subject_client_id)
);

-- Token exchange of other issuers' tokens (RFC 8693): whose tokens may be exchanged, checked
-- how, and standing for which pg_oauth client. Keys by value: nothing is fetched inside a
-- transaction. Deleting the client deletes the row (finalize.sql).
CREATE TABLE oauth.trusted_issuer (
    issuer              text PRIMARY KEY,
    jwks                jsonb NOT NULL,
    algorithms          text[] NOT NULL DEFAULT '{RS256,ES256}',
    audiences           text[] NOT NULL,
    max_token_age       integer NOT NULL DEFAULT 3600,
    token_type          text,
    subject_client_id   text NOT NULL,
    scope               text[] NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT trusted_issuer_jwks_is_jwk_set
        CHECK (jsonb_typeof(jwks -> 'keys') = 'array'),
    CONSTRAINT trusted_issuer_jwks_public_only
        CHECK (NOT jsonb_path_exists(jwks,
            '$.keys[*] ? (exists(@.d) || exists(@.p) || exists(@.q) || exists(@.k) || @.kty == "oct")')),
    CONSTRAINT trusted_issuer_algorithms_supported
        CHECK (cardinality(algorithms) > 0
               AND algorithms <@ ARRAY['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
                                       'ES256', 'ES384', 'EdDSA']),
    CONSTRAINT trusted_issuer_audiences_given
        CHECK (cardinality(audiences) > 0),
    CONSTRAINT trusted_issuer_max_token_age_positive
        CHECK (max_token_age > 0)
);
