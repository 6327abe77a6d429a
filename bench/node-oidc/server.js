// node-oidc-provider as a comparison point for `make bench`: a client
// credentials token endpoint with the library's own defaults wherever the
// benchmark does not need something else.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

import PgAdapter, { connect } from './pg_adapter.js';

const host = '127.0.0.1';
const port = Number(process.env.PORT || 3901);
const issuer = `http://${host}:${port}`;

// Signing key made at startup, so the provider does not fall back to its
// development-only keys. Opaque access tokens never use it.
const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ format: 'jwk' });

// DATABASE_URL set: tokens are committed to PostgreSQL (pg_adapter.js), each before its
// response. Unset: the library's default in-memory adapter.
const databaseUrl = process.env.DATABASE_URL;
if (databaseUrl) await connect(databaseUrl, Number(process.env.PG_POOL || 16));

const provider = new Provider(issuer, {
  ...(databaseUrl ? { adapter: PgAdapter } : {}),
  clients: [{
    client_id: 'bench-client',
    client_secret: 'benchsecret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    // A client-credentials-only client has no redirects and no responses.
    redirect_uris: [],
    response_types: [],
    // The scopes this client may ask for.
    scope: 'read',
  }],
  // Declare `read` to the provider (`openid` is added by the library itself).
  scopes: ['read'],
  features: {
    clientCredentials: { enabled: true }, // the grant being measured
    devInteractions: { enabled: false }, // no login pages: production-like
  },
  // Token lifetime stated (same 10 minutes as the default) so the provider
  // does not print a notice on stdout at the first token.
  ttl: { ClientCredentials: 600 },
  // Cookie keys made at startup (the token endpoint sets no cookies, but
  // the provider warns without them).
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  jwks: { keys: [{ ...jwk, kid: 'bench', alg: 'RS256', use: 'sig' }] },
});

// Plain HTTP on loopback, no reverse proxy: X-Forwarded-* is not trusted.
provider.proxy = false;

// oidc-provider logs nothing per request by itself (it only emits events,
// and nothing listens to them here), so there is no logging to turn off.

// The token endpoint URL, from this version's `routes.token` default.
const tokenEndpoint = provider.urlFor('token');

createServer(provider.callback()).listen(port, host, () => {
  console.log(`listening ${issuer} token_endpoint=${tokenEndpoint} adapter=${databaseUrl ? 'postgresql' : 'memory'}`);
});
