-- Discovery documents as clients read them: RFC 8414 metadata with the endpoint paths a
-- proxy serves (pg_oauth.endpoint_prefix), and SMART App Launch 2.x configuration.
\set VERBOSITY default
\set SHOW_CONTEXT never
RESET pg_oauth.issuer;

-- Both documents need an issuer to name endpoints.
SELECT oauth.auth_smart_configuration();
SET pg_oauth.issuer = 'https://auth.example';

-- PostgREST's paths by default; a proxy in front serves /token, /jwks, ...
SELECT oauth.auth_metadata() ->> 'token_endpoint' AS rpc_default;
SET pg_oauth.endpoint_prefix = '';
SELECT oauth.auth_metadata() ->> 'issuer' AS issuer,
       oauth.auth_metadata() ->> 'token_endpoint' AS token_endpoint,
       oauth.auth_metadata() ->> 'jwks_uri' AS jwks_uri;
SET pg_oauth.endpoint_prefix = '/oauth2/';
SELECT oauth.auth_metadata() ->> 'revocation_endpoint' AS with_prefix;
SET pg_oauth.api_url = 'https://api.example/';
SELECT oauth.auth_metadata() ->> 'introspection_endpoint' AS api_url_and_prefix;
RESET pg_oauth.api_url;
SET pg_oauth.endpoint_prefix = '';

-- SMART: no issuer member (SMART publishes one only for sso-openid-connect).
SELECT jsonb_pretty(oauth.auth_smart_configuration()) AS smart_configuration;
SET pg_oauth.scopes_supported = 'system/*.rs system/Patient.rs';
SELECT oauth.auth_smart_configuration() -> 'scopes_supported' AS scopes_supported;
RESET pg_oauth.scopes_supported;
RESET pg_oauth.endpoint_prefix;

-- Only oauth_app (and the owner) may call it; GET /rpc/smart_configuration comes from
-- create_http_endpoints.
SELECT has_function_privilege('oauth_app', 'oauth.auth_smart_configuration()', 'EXECUTE') AS app,
       has_function_privilege('public', 'oauth.auth_smart_configuration()', 'EXECUTE') AS public,
       has_function_privilege('public', 'oauth.http_smart_configuration()', 'EXECUTE') AS http_public;
