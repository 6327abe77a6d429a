-- SMART on FHIR scopes, client assertions and secret rotation as seen from SQL.
\set VERBOSITY default
\set SHOW_CONTEXT never

INSERT INTO oauth.client (id, secret, type, scope)
VALUES ('smart-client', 'verysecret', 'smart-app', '{system/*.read,system/Observation.cruds}');

-- system/*.read expands to one scope per resource type in oauth.fhir_resource_type.
SELECT count(*) AS resource_types FROM oauth.fhir_resource_type;
SELECT s AS first_granted
  FROM unnest(string_to_array(
         oauth.auth_token('client_credentials', 'smart-client', 'verysecret', 'system/*.read') ->> 'scope', ' ')) AS s
 ORDER BY s LIMIT 3;
SELECT oauth.auth_token('client_credentials', 'smart-client', 'verysecret', 'system/Observation.rs') ->> 'scope' AS v2;

-- No patient or user context in the client credentials grant.
SELECT oauth.auth_token('client_credentials', 'smart-client', 'verysecret', 'patient/*.read');
\echo :LAST_ERROR_SQLSTATE
SELECT oauth.auth_token('client_credentials', 'smart-client', 'verysecret', 'system/Patient.write');

-- Client assertions (private_key_jwt): malformed or mismatched ones are invalid_client.
SET pg_oauth.issuer = 'https://issuer.example';
SELECT oauth.auth_token('client_credentials', client_assertion_type => 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
                        client_assertion => 'not-a-jwt');
\echo :LAST_ERROR_SQLSTATE
SELECT oauth.auth_token('client_credentials', client_assertion_type => 'urn:example:saml', client_assertion => 'x');
SELECT oauth.auth_token('client_credentials', client_assertion => 'x');
SELECT oauth.auth_token('client_credentials', 'smart-client', 'verysecret',
                        client_assertion_type => 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion => 'x');
RESET pg_oauth.issuer;

-- Registered keys must be public.
\set VERBOSITY terse
UPDATE oauth.client SET jwks = '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}' WHERE id = 'smart-client';
\set VERBOSITY default

-- Secret rotation returns the new secret once; the old one stays valid for the grace.
SELECT length(oauth.rotate_client_secret('smart-client', interval '1 hour')) AS new_secret_length;
SELECT oauth.auth_token('client_credentials', 'smart-client', 'verysecret', 'system/Patient.read') ->> 'scope' AS old_secret_still_works;
SELECT previous_secret_expires_at > now() + interval '59 minutes' AS grace_recorded FROM oauth.client WHERE id = 'smart-client';
UPDATE oauth.client SET secret = 'replaced' WHERE id = 'smart-client';
SELECT previous_secret_expires_at IS NULL AS grace_ended FROM oauth.client WHERE id = 'smart-client';
SELECT oauth.auth_token('client_credentials', 'smart-client', 'verysecret');
SELECT oauth.rotate_client_secret('no-such-client');
SELECT oauth.rotate_client_secret('smart-client', interval '-1 hour');
