// A load generator that can sign DPoP proofs (RFC 9449), for `make bench`: hey sends the
// same headers every time, and every DPoP request needs a fresh proof. Keeps CONCURRENCY
// requests in flight for SECONDS and counts the 200s; bearer and DPoP runs use this same
// generator, so their ratio compares like with like. Proofs are ES256, signed with panva's
// jose on this machine's CPU (as a real client would sign them).
// Usage: node load.mjs MODE SECONDS CONCURRENCY URL HTU CLIENT:SECRET TOKEN_URL TOKEN_HTU
//   MODE: token-bearer | token-dpop (POST URL, client credentials with HTTP Basic)
//         api-bearer | api-dpop (GET URL with a token from TOKEN_URL)
// Prints one JSON line: {"ok": n, "failed": n, "rps": x, "first_failure": ...}.
import { createHash } from 'node:crypto';
import * as jose from 'jose';

const [mode, seconds, concurrency, url, htu, credentials, tokenUrl, tokenHtu] = process.argv.slice(2);
const basic = `Basic ${Buffer.from(credentials).toString('base64')}`;
const { publicKey, privateKey } = await jose.generateKeyPair('ES256');
const jwk = await jose.exportJWK(publicKey);
const proof = (htm, target, ath) => new jose.SignJWT({
  htm, htu: target, jti: crypto.randomUUID(), ...(ath ? { ath } : {}),
})
  .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
  .setIssuedAt()
  .sign(privateKey);
const form = 'grant_type=client_credentials';

async function tokenRequest(dpop, target, targetHtu) {
  const headers = { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' };
  if (dpop) headers.dpop = await proof('POST', targetHtu);
  return fetch(target, { method: 'POST', headers, body: form });
}

let accessToken;
let ath;
if (mode.startsWith('api')) {
  const r = await tokenRequest(mode === 'api-dpop', tokenUrl, tokenHtu);
  if (r.status !== 200) throw new Error(`token: ${r.status} ${await r.text()}`);
  accessToken = (await r.json()).access_token;
  ath = createHash('sha256').update(accessToken).digest('base64url');
}

const deadline = Date.now() + Number(seconds) * 1000;
let ok = 0;
let failed = 0;
let firstFailure = null;
async function worker() {
  while (Date.now() < deadline) {
    let r;
    if (mode === 'token-bearer' || mode === 'token-dpop') {
      r = await tokenRequest(mode === 'token-dpop', url, htu);
    } else if (mode === 'api-dpop') {
      r = await fetch(url, {
        headers: { authorization: `DPoP ${accessToken}`, dpop: await proof('GET', htu, ath) },
      });
    } else {
      r = await fetch(url, { headers: { authorization: `Bearer ${accessToken}` } });
    }
    const body = await r.text();
    if (r.status === 200) {
      ok += 1;
    } else {
      failed += 1;
      firstFailure ??= `${r.status} ${r.headers.get('www-authenticate') ?? ''} ${body}`;
    }
  }
}
await Promise.all(Array.from({ length: Number(concurrency) }, worker));
console.log(JSON.stringify({ ok, failed, rps: ok / Number(seconds), first_failure: firstFailure }));
