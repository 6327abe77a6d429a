// Knows only the issuer: discovers the server from `<issuer>/.well-known/oauth-authorization-
// server` (RFC 8414; openid-client's `discovery` with `algorithm: 'oauth2'`), then gets a
// token (client credentials, client_secret_basic), introspects it (RFC 7662), revokes it
// (RFC 7009) and introspects it again. Prints one JSON line of what it saw; the Rust test
// judges it. The listener speaks plain HTTP on loopback here (TLS is tested apart), which
// this library allows only when told to.
// Usage: node client.mjs ISSUER CLIENT_ID CLIENT_SECRET
import * as oidc from 'openid-client';

const [issuerUrl, clientId, clientSecret] = process.argv.slice(2);
const config = await oidc.discovery(
  new URL(issuerUrl),
  clientId,
  undefined,
  oidc.ClientSecretBasic(clientSecret),
  { algorithm: 'oauth2', execute: [oidc.allowInsecureRequests] },
);
const server = config.serverMetadata();
const tokens = await oidc.clientCredentialsGrant(config, { scope: 'read' });
const before = await oidc.tokenIntrospection(config, tokens.access_token);
await oidc.tokenRevocation(config, tokens.access_token);
const after = await oidc.tokenIntrospection(config, tokens.access_token);
console.log(JSON.stringify({
  issuer: server.issuer,
  token_endpoint: server.token_endpoint,
  access_token: tokens.access_token,
  token_type: tokens.token_type,
  expires_in: tokens.expires_in,
  scope: tokens.scope,
  active_before: before.active,
  client_id_before: before.client_id,
  active_after: after.active,
}));
