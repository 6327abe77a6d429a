// pg_oauth sandbox: the token endpoint of this server, tried from the browser. Every value
// the server returns is shown with textContent (never as HTML), and the page loads no script
// but this one (its Content-Security-Policy allows nothing else).
"use strict";

const $ = (id) => document.getElementById(id);
let current = { token: null, clientId: null, auth: null };

const b64url = (bytes) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const b64urlText = (text) => b64url(new TextEncoder().encode(text));
const unb64url = (text) => {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
};
const decodeJson = (part) => JSON.parse(new TextDecoder().decode(unb64url(part)));
const show = (id, text) => { $(id).textContent = text; };

// HTTP Basic as RFC 6749 §2.3.1 says: each part form-urlencoded first.
const formEncode = (value) => encodeURIComponent(value).replace(/%20/g, "+");
const basic = (id, secret) => "Basic " + btoa(formEncode(id) + ":" + formEncode(secret));
const shellQuote = (value) => "'" + value.replace(/'/g, "'\\''") + "'";

function grantChanged() {
  const grant = $("grant").value;
  $("secret-fields").hidden = grant === "private_key_jwt";
  $("key-fields").hidden = grant !== "private_key_jwt";
  $("refresh-fields").hidden = grant !== "refresh_token";
}

async function generateKey() {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const kid = b64url(crypto.getRandomValues(new Uint8Array(12)));
  Object.assign(jwk, { kid, alg: "ES256", use: "sig" });
  $("private-key").value = JSON.stringify(jwk);
  const { d, key_ops, ext, ...pub } = jwk;
  $("public-key").value = JSON.stringify({ keys: [pub] });
}

// A client assertion (RFC 7523) signed here: aud is the token endpoint, as RFC 7523 wants.
async function clientAssertion(clientId, tokenUrl) {
  const jwk = JSON.parse($("private-key").value);
  const key = await crypto.subtle.importKey("jwk", { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d },
    { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: "ES256", typ: "JWT", kid: jwk.kid };
  const claims = { iss: clientId, sub: clientId, aud: tokenUrl, iat: now, exp: now + 60,
    jti: b64url(crypto.getRandomValues(new Uint8Array(16))) };
  const input = b64urlText(JSON.stringify(header)) + "." + b64urlText(JSON.stringify(claims));
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, new TextEncoder().encode(input));
  return input + "." + b64url(signature);
}

async function requestToken(event) {
  event.preventDefault();
  for (const id of ["http-request", "curl", "http-response", "jwt-header", "jwt-claims", "verification", "token-status"]) {
    show(id, "");
  }
  const grant = $("grant").value;
  const clientId = $("client-id").value;
  // The token endpoint as this server names it (its issuer may not be this page's origin):
  // the audience of a client assertion.
  let tokenUrl = new URL("/token", location.href).href;
  try {
    const metadata = await (await fetch("/.well-known/oauth-authorization-server")).json();
    if (metadata.token_endpoint) tokenUrl = metadata.token_endpoint;
  } catch (_) { /* this page's origin, then */ }
  const form = new URLSearchParams();
  const headers = { "Content-Type": "application/x-www-form-urlencoded" };
  form.set("grant_type", grant === "private_key_jwt" ? "client_credentials" : grant);
  if (grant === "refresh_token") form.set("refresh_token", $("refresh-token").value);
  if ($("scope").value) form.set("scope", $("scope").value);
  if ($("audience").value) form.set("audience", $("audience").value);
  let auth = null;
  if (grant === "private_key_jwt") {
    form.set("client_id", clientId);
    form.set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    try {
      form.set("client_assertion", await clientAssertion(clientId, tokenUrl));
    } catch (e) {
      show("http-response", "The private key cannot sign: " + e);
      return;
    }
  } else {
    auth = basic(clientId, $("client-secret").value);
    headers.Authorization = auth;
  }
  const body = form.toString();
  show("http-request", "POST /token HTTP/1.1\nHost: " + location.host + "\n" +
    Object.entries(headers).map(([k, v]) => k + ": " + (k === "Authorization" ? "Basic …" : v)).join("\n") +
    "\n\n" + body);
  const curlAuth = auth ? " -u " + shellQuote(formEncode(clientId) + ":" + formEncode($("client-secret").value)) : "";
  show("curl", "curl" + curlAuth + " " + [...form].map(([k, v]) => "--data-urlencode " + shellQuote(k + "=" + v)).join(" ") +
    " " + shellQuote(tokenUrl));
  let reply;
  try {
    // credentials "omit": a 401 with WWW-Authenticate: Basic must not raise the browser's
    // own login prompt; the Authorization header is the page's own.
    reply = await fetch("/token", { method: "POST", headers, body, credentials: "omit" });
  } catch (e) {
    show("http-response", "The request failed: " + e);
    return;
  }
  const answer = await reply.text();
  let pretty = answer;
  let json = null;
  try { json = JSON.parse(answer); pretty = JSON.stringify(json, null, 2); } catch (_) { /* shown as is */ }
  show("http-response", "HTTP " + reply.status + "\n\n" + pretty);
  current = { token: json && json.access_token, clientId, auth };
  if (json && json.refresh_token) $("refresh-token").value = json.refresh_token;
  $("introspect").disabled = $("revoke").disabled = !(current.token && current.auth);
  show("token-status", "");
  await inspect(current.token);
}

const ALGS = {
  ES256: [{ name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" }],
  RS256: [{ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, { name: "RSASSA-PKCS1-v1_5" }],
  PS256: [{ name: "RSA-PSS", hash: "SHA-256" }, { name: "RSA-PSS", saltLength: 32 }],
  EdDSA: [{ name: "Ed25519" }, { name: "Ed25519" }],
};

async function inspect(token) {
  show("jwt-header", ""); show("jwt-claims", ""); show("verification", "");
  $("verification").className = "";
  if (!token) return;
  const parts = token.split(".");
  if (parts.length !== 3) {
    show("verification", "An opaque token: only the server can read it (introspect it below).");
    return;
  }
  let header;
  try {
    header = decodeJson(parts[0]);
    show("jwt-header", JSON.stringify(header, null, 2));
    show("jwt-claims", JSON.stringify(decodeJson(parts[1]), null, 2));
  } catch (e) {
    show("verification", "The token is not a readable JWT: " + e);
    return;
  }
  const verdict = (ok, text) => { $("verification").className = ok ? "ok" : "bad"; show("verification", text); };
  if (!ALGS[header.alg]) {
    verdict(false, header.alg + " signatures cannot be checked here (an HS256 key is a secret of the server).");
    return;
  }
  try {
    const jwks = await (await fetch("/jwks")).json();
    const jwk = (jwks.keys || []).find((k) => k.kid === header.kid);
    if (!jwk) { verdict(false, "Signature not checked: /jwks has no key " + header.kid); return; }
    const [importAlg, verifyAlg] = ALGS[header.alg];
    const { kid, alg, use, ...material } = jwk;
    const key = await crypto.subtle.importKey("jwk", material, importAlg, false, ["verify"]);
    const ok = await crypto.subtle.verify(verifyAlg, key, unb64url(parts[2]),
      new TextEncoder().encode(parts[0] + "." + parts[1]));
    verdict(ok, ok ? "Signature verified in this browser with key " + header.kid + " of /jwks (" + header.alg + ")."
      : "The signature does not verify with key " + header.kid + " of /jwks.");
  } catch (e) {
    verdict(false, "The signature could not be checked: " + e);
  }
}

async function clientCall(path) {
  show("token-status", "");
  const reply = await fetch(path, {
    method: "POST",
    credentials: "omit",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Authorization: current.auth },
    body: new URLSearchParams({ token: current.token }).toString(),
  });
  const text = await reply.text();
  let pretty = text;
  try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* as is */ }
  show("token-status", "POST " + path + " → HTTP " + reply.status + "\n\n" + pretty);
}

document.addEventListener("DOMContentLoaded", () => {
  $("grant").addEventListener("change", grantChanged);
  $("generate-key").addEventListener("click", generateKey);
  $("token-form").addEventListener("submit", requestToken);
  $("introspect").addEventListener("click", () => clientCall("/introspect"));
  $("revoke").addEventListener("click", () => clientCall("/revoke"));
  grantChanged();
});
