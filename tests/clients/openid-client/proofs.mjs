// DPoP proofs (RFC 9449) made with panva's jose, for tests that need proofs fresh at run
// time (tests/harness/tests/isolation.rs puts them into tests/isolation/specs/*.spec.in):
// COUNT proofs for HTM HTU by one new ES256 key, each with its own jti, issued now.
// Usage: node proofs.mjs HTM HTU COUNT
import * as jose from 'jose';

const [htm, htu, count] = process.argv.slice(2);
const { publicKey, privateKey } = await jose.generateKeyPair('ES256');
const jwk = await jose.exportJWK(publicKey);
const proofs = [];
for (let i = 0; i < Number(count); i += 1) {
  proofs.push(await new jose.SignJWT({ htm, htu, jti: crypto.randomUUID() })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
    .setIssuedAt()
    .sign(privateKey));
}
console.log(JSON.stringify(proofs));
