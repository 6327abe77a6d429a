-- pg_oauth tables. Loaded before the extension's functions are created.
-- Every table is owned by the extension owner and closed to PUBLIC; see finalize.sql.

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

    CONSTRAINT client_id_valid
        CHECK (length(id) BETWEEN 1 AND 255 AND id !~ '[[:cntrl:]]'),
    CONSTRAINT client_id_string_or_uri
        CHECK (oauth.is_string_or_uri(id)),
    CONSTRAINT grant_types_supported
        CHECK (grant_types <@ ARRAY['client_credentials', 'refresh_token']),
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
    CONSTRAINT previous_secret_has_expiry
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);


-- A client's access: the database role its tokens act as. No row, no role.
CREATE TABLE oauth.policy (
    client_id   text PRIMARY KEY REFERENCES oauth.client (id) ON DELETE CASCADE,
    role        name NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);


-- One row per issued access token. No foreign key to oauth.client on purpose: the FK
-- check would share-lock the client row on every issuance; triggers on oauth.client
-- close sessions instead.
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
    -- revoked_at is included so the JWT revocation check can be an index-only probe.
    PRIMARY KEY (id) INCLUDE (revoked_at)
);

CREATE INDEX session_client_id_idx ON oauth.session (client_id);
-- For oauth.purge_expired(): sessions arrive in expiry order (nearly), so a BRIN index finds
-- the expired ones at almost no cost to issuance (a B-tree would add a write per token).
CREATE INDEX session_expires_at_idx ON oauth.session USING brin (expires_at)
    WITH (autosummarize = on);


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
    family_id   uuid NOT NULL REFERENCES oauth.refresh_family (id) ON DELETE CASCADE,
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


-- FHIR resource types that SMART wildcard scopes (system/*.read) expand to. Data, not code:
-- a DBA adds or removes types (e.g. for R5 or custom resources) with INSERT/DELETE.
CREATE TABLE oauth.fhir_resource_type (
    name text PRIMARY KEY CONSTRAINT fhir_resource_type_name CHECK (name ~ '^[A-Z][A-Za-z0-9]*$')
);


INSERT INTO oauth.fhir_resource_type (name) VALUES
    ('Account'), ('ActivityDefinition'), ('AdverseEvent'), ('AllergyIntolerance'),
    ('Appointment'), ('AppointmentResponse'), ('AuditEvent'), ('Basic'), ('Binary'),
    ('BiologicallyDerivedProduct'), ('BodyStructure'), ('Bundle'), ('CapabilityStatement'),
    ('CarePlan'), ('CareTeam'), ('CatalogEntry'), ('ChargeItem'), ('ChargeItemDefinition'),
    ('Claim'), ('ClaimResponse'), ('ClinicalImpression'), ('CodeSystem'), ('Communication'),
    ('CommunicationRequest'), ('CompartmentDefinition'), ('Composition'), ('ConceptMap'),
    ('Condition'), ('Consent'), ('Contract'), ('Coverage'), ('CoverageEligibilityRequest'),
    ('CoverageEligibilityResponse'), ('DetectedIssue'), ('Device'), ('DeviceDefinition'),
    ('DeviceMetric'), ('DeviceRequest'), ('DeviceUseStatement'), ('DiagnosticReport'),
    ('DocumentManifest'), ('DocumentReference'), ('EffectEvidenceSynthesis'), ('Encounter'),
    ('Endpoint'), ('EnrollmentRequest'), ('EnrollmentResponse'), ('EpisodeOfCare'),
    ('EventDefinition'), ('Evidence'), ('EvidenceVariable'), ('ExampleScenario'),
    ('ExplanationOfBenefit'), ('FamilyMemberHistory'), ('Flag'), ('Goal'), ('GraphDefinition'),
    ('Group'), ('GuidanceResponse'), ('HealthcareService'), ('ImagingStudy'), ('Immunization'),
    ('ImmunizationEvaluation'), ('ImmunizationRecommendation'), ('ImplementationGuide'),
    ('InsurancePlan'), ('Invoice'), ('Library'), ('Linkage'), ('List'), ('Location'),
    ('Measure'), ('MeasureReport'), ('Media'), ('Medication'), ('MedicationAdministration'),
    ('MedicationDispense'), ('MedicationKnowledge'), ('MedicationRequest'),
    ('MedicationStatement'), ('MedicinalProduct'), ('MedicinalProductAuthorization'),
    ('MedicinalProductContraindication'), ('MedicinalProductIndication'),
    ('MedicinalProductIngredient'), ('MedicinalProductInteraction'),
    ('MedicinalProductManufactured'), ('MedicinalProductPackaged'),
    ('MedicinalProductPharmaceutical'), ('MedicinalProductUndesirableEffect'),
    ('MessageDefinition'), ('MessageHeader'), ('MolecularSequence'), ('NamingSystem'),
    ('NutritionOrder'), ('Observation'), ('ObservationDefinition'), ('OperationDefinition'),
    ('OperationOutcome'), ('Organization'), ('OrganizationAffiliation'), ('Parameters'),
    ('Patient'), ('PaymentNotice'), ('PaymentReconciliation'), ('Person'), ('PlanDefinition'),
    ('Practitioner'), ('PractitionerRole'), ('Procedure'), ('Provenance'), ('Questionnaire'),
    ('QuestionnaireResponse'), ('RelatedPerson'), ('RequestGroup'), ('ResearchDefinition'),
    ('ResearchElementDefinition'), ('ResearchStudy'), ('ResearchSubject'), ('RiskAssessment'),
    ('RiskEvidenceSynthesis'), ('Schedule'), ('SearchParameter'), ('ServiceRequest'), ('Slot'),
    ('Specimen'), ('SpecimenDefinition'), ('StructureDefinition'), ('StructureMap'),
    ('Subscription'), ('Substance'), ('SubstanceNucleicAcid'), ('SubstancePolymer'),
    ('SubstanceProtein'), ('SubstanceReferenceInformation'), ('SubstanceSourceMaterial'),
    ('SubstanceSpecification'), ('SupplyDelivery'), ('SupplyRequest'), ('Task'),
    ('TerminologyCapabilities'), ('TestReport'), ('TestScript'), ('ValueSet'),
    ('VerificationResult'), ('VisionPrescription');

-- jti values of client assertions seen (RFC 7523 §3: no replay until they expire).
CREATE TABLE oauth.client_assertion_jti (
    client_id   text NOT NULL,
    jti         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE INDEX client_assertion_jti_expires_at_idx ON oauth.client_assertion_jti (expires_at);

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


