// Token exchange (RFC 8693) as openid-client does it: discovers the server from the issuer,
// gets the client's own token with the client credentials grant, and exchanges the subject
// token it is given for one of its own, with its own token as the actor token (delegation),
// through the library's generic grant request. Prints both responses.
// Usage: node exchange.mjs ISSUER CLIENT_ID CLIENT_SECRET SUBJECT_TOKEN SCOPE AUDIENCE
import * as oidc from 'openid-client';

const [issuerUrl, clientId, clientSecret, subjectToken, scope, audience] = process.argv.slice(2);
const config = await oidc.discovery(
  new URL(issuerUrl),
  clientId,
  undefined,
  oidc.ClientSecretBasic(clientSecret),
  { algorithm: 'oauth2', execute: [oidc.allowInsecureRequests] },
);
const grantTypes = config.serverMetadata().grant_types_supported;
const own = await oidc.clientCredentialsGrant(config);
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
const exchanged = await oidc.genericGrantRequest(
  config,
  'urn:ietf:params:oauth:grant-type:token-exchange',
  {
    subject_token: subjectToken,
    subject_token_type: accessTokenType,
    actor_token: own.access_token,
    actor_token_type: accessTokenType,
    scope,
    audience,
  },
);
console.log(JSON.stringify({ grant_types: grantTypes, actor: own, exchanged }));
