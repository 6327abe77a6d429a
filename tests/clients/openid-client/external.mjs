// Another issuer (an EHR, say) as the token exchange tests need it, made with panva's jose:
// its key pair, its public JWK Set, and tokens it signs, good and bad in one way each.
// Usage: node external.mjs ISSUER AUDIENCE
// Prints {"jwks": {...}, "tokens": {"valid": "...", "expired": "...", ...}}.
import * as jose from 'jose';

const [issuer, audience] = process.argv.slice(2);
const now = Math.floor(Date.now() / 1000);
const { publicKey, privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
const attacker = await jose.generateKeyPair('ES256');
const rsa = await jose.generateKeyPair('RS256');
const jwk = { ...(await jose.exportJWK(publicKey)), kid: 'ehr-1', alg: 'ES256', use: 'sig' };
const rsaJwk = { ...(await jose.exportJWK(rsa.publicKey)), kid: 'ehr-rsa', alg: 'RS256', use: 'sig' };

async function sign(claims, { key = privateKey, alg = 'ES256', kid = 'ehr-1', typ = 'at+jwt' } = {}) {
  const base = { iss: issuer, sub: 'patient-7', aud: audience, iat: now, exp: now + 300, scope: 'patient/*.read' };
  return new jose.SignJWT({ ...base, ...claims }).setProtectedHeader({ alg, kid, typ }).sign(key);
}

console.log(JSON.stringify({
  jwks: { keys: [jwk, rsaJwk] },
  tokens: {
    valid: await sign({}),
    expired: await sign({ iat: now - 900, exp: now - 600 }),
    wrong_audience: await sign({ aud: 'https://elsewhere.example' }),
    bad_signature: await sign({}, { key: attacker.privateKey }),
    unknown_issuer: await sign({ iss: 'https://unknown.example' }),
    alg_not_allowed: await sign({}, { key: rsa.privateKey, alg: 'RS256', kid: 'ehr-rsa' }),
    too_old: await sign({ iat: now - 7200, exp: now + 300 }),
    wrong_typ: await sign({}, { typ: 'JWT' }),
    may_act_other: await sign({ may_act: { sub: 'someone-else' } }),
  },
}));
