// DPoP (RFC 9449) end to end as openid-client does it: discovers the server from the
// issuer, gets a DPoP-bound token with a key of the given algorithm, and reads the API at
// RESOURCE with it (Authorization: DPoP and a DPoP proof). Then what a thief could try with
// what it saw on the wire: the same request replayed, the token as a bearer token, the
// token with a proof by its own key, and the seen proof at another URL. Prints one JSON line
// of statuses and challenges; the Rust test judges it.
// Usage: node dpop_api.mjs ISSUER CLIENT_ID CLIENT_SECRET ALG RESOURCE OTHER_RESOURCE
import * as oidc from 'openid-client';

const [issuerUrl, clientId, clientSecret, alg, resource, other] = process.argv.slice(2);
const config = await oidc.discovery(
  new URL(issuerUrl),
  clientId,
  undefined,
  oidc.ClientSecretBasic(clientSecret),
  { algorithm: 'oauth2' },
);
// Record what the library sends, as someone on the wire would see it.
const sent = [];
config[oidc.customFetch] = (url, options) => {
  sent.push({ url, headers: new Headers(options.headers) });
  return fetch(url, options);
};
const DPoP = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair(alg));
const tokens = await oidc.clientCredentialsGrant(config, { scope: 'notes:read' }, { DPoP });
const token = tokens.access_token;
const response = await oidc.fetchProtectedResource(
  config, token, new URL(resource), 'GET', undefined, undefined, { DPoP },
);
const body = await response.json();
const seen = sent[sent.length - 1].headers;

const attempt = async (url, headers) => {
  const r = await fetch(url, { headers });
  return { status: r.status, challenge: r.headers.get('www-authenticate') };
};
const thiefKey = await oidc.randomDPoPKeyPair(alg);
const thiefProof = await (async () => {
  // The thief's own DPoP handle makes a proof for the token, signed by the thief's key.
  const thief = oidc.getDPoPHandle(config, thiefKey);
  const captured = [];
  config[oidc.customFetch] = (url, options) => {
    captured.push(new Headers(options.headers));
    return fetch(url, options);
  };
  await oidc.fetchProtectedResource(config, token, new URL(resource), 'GET', undefined, undefined, { DPoP: thief })
    .catch(() => {});
  return captured[captured.length - 1];
})();
console.log(JSON.stringify({
  token_type: tokens.token_type,
  status: response.status,
  rows: body.length,
  scheme: seen.get('authorization').split(' ')[0],
  proof_nonce: JSON.parse(Buffer.from(seen.get('dpop').split('.')[1], 'base64url')).nonce ?? null,
  replayed: await attempt(resource, { authorization: seen.get('authorization'), dpop: seen.get('dpop') }),
  as_bearer: await attempt(resource, { authorization: `Bearer ${token}` }),
  no_proof: await attempt(resource, { authorization: `DPoP ${token}` }),
  thief: await attempt(resource, { authorization: thiefProof.get('authorization'), dpop: thiefProof.get('dpop') }),
  elsewhere: await attempt(other, { authorization: seen.get('authorization'), dpop: seen.get('dpop') }),
}));
