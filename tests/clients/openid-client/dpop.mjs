// DPoP (RFC 9449) as openid-client does it: discovers the server from the issuer, makes a
// DPoP key pair of the given algorithm, gets a DPoP-bound token (client credentials, the
// proof in the DPoP header), then calls a resource with it. The resource is a stand-in that
// records the request (method, URL, Authorization and DPoP headers) for the Rust test, which
// checks the token and the library's proof where the data is: oauth.auth_verify.
// With NONCE, the stand-in first answers as a resource server that requires DPoP nonces does
// (RFC 9449 §9: 401, use_dpop_nonce, DPoP-Nonce), and records the library's retry.
// Usage: node dpop.mjs ISSUER CLIENT_ID CLIENT_SECRET ALG [NONCE]
import http from 'node:http';
import * as oidc from 'openid-client';

const [issuerUrl, clientId, clientSecret, alg, nonce] = process.argv.slice(2);
const config = await oidc.discovery(
  new URL(issuerUrl),
  clientId,
  undefined,
  oidc.ClientSecretBasic(clientSecret),
  { algorithm: 'oauth2', execute: [oidc.allowInsecureRequests] },
);
const server = config.serverMetadata();
const DPoP = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair(alg));
const tokens = await oidc.clientCredentialsGrant(config, { scope: 'read' }, { DPoP });

const requests = [];
let challenged = false;
const resource = http.createServer((req, res) => {
  if (nonce && !challenged) {
    challenged = true;
    res.writeHead(401, {
      'www-authenticate': 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"',
      'dpop-nonce': nonce,
    });
    res.end();
    return;
  }
  requests.push({
    method: req.method,
    path: req.url,
    authorization: req.headers.authorization,
    dpop: req.headers.dpop,
  });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end('[]');
});
await new Promise((resolve) => resource.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${resource.address().port}`;
const response = await oidc.fetchProtectedResource(
  config, tokens.access_token, new URL(`${base}/items?select=id`), 'GET', undefined, undefined, { DPoP },
);
resource.close();
console.log(JSON.stringify({
  dpop_algs: server.dpop_signing_alg_values_supported,
  token_type: tokens.token_type,
  access_token: tokens.access_token,
  resource_status: response.status,
  resource: base,
  requests,
}));
