// The sandbox in Debian's Chromium, driven by Playwright: as a developer would use it.
//   node sandbox.mjs keypair                 -> an ES256 key pair as JWKs (for the harness)
//   node sandbox.mjs                         -> runs the page; prints what it saw as JSON
// Environment: BASE (the listener's origin), CLIENT_ID/SECRET (a JWT client), OPAQUE_ID,
// XSS_ID (a client whose id is markup) and the shared SECRET, PK_ID and PK_JWK (a
// private_key_jwt client and its private key), SCREENSHOT (where to save the page).
import { inlineScriptBlocked, openPage } from "./launch.mjs";
import { generateKeyPairSync, randomUUID } from "node:crypto";

if (process.argv[2] === "keypair") {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const kid = randomUUID();
  const priv = { ...privateKey.export({ format: "jwk" }), kid, alg: "ES256" };
  const pub = { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" };
  console.log(JSON.stringify({ private: priv, public: pub }));
  process.exit(0);
}

const env = process.env;
const { browser, page, dialogs, consoleErrors } = await openPage({ width: 1100, height: 1400 });
const out = { dialogs, consoleErrors };

const response = await page.goto(env.BASE + "/sandbox");
out.status = response.status();
out.csp = response.headers()["content-security-policy"];
out.frameOptions = response.headers()["x-frame-options"];

const text = async (id) => (await page.textContent("#" + id)) || "";
async function tokenWith(grant, clientId, secret) {
  console.error("token for " + clientId);
  await page.selectOption("#grant", grant);
  await page.fill("#client-id", clientId);
  if (secret !== null) await page.fill("#client-secret", secret);
  await page.click("#request-token");
  await page.waitForFunction(() => document.getElementById("http-response").textContent.startsWith("HTTP"));
  // The signature check is asynchronous (it fetches /jwks).
  await page.waitForFunction(() => document.getElementById("verification").textContent !== "" ||
    !document.getElementById("http-response").textContent.includes("access_token"), null, { timeout: 10000 });
}

async function steps() {
  // 1. A JWT client: token, decoded, verified against /jwks; introspect, revoke, refused.
  await tokenWith("client_credentials", env.CLIENT_ID, env.SECRET);
  out.request = await text("http-request");
  out.curl = await text("curl");
  out.response = await text("http-response");
  out.verification = await text("verification");
  out.claims = JSON.parse(await text("jwt-claims"));
  if (env.SCREENSHOT) await page.screenshot({ path: env.SCREENSHOT, fullPage: true });
  await page.click("#introspect");
  await page.waitForFunction(() => document.getElementById("token-status").textContent.includes("HTTP"));
  out.introspected = await text("token-status");
  await page.click("#revoke");
  await page.waitForFunction(() => document.getElementById("token-status").textContent.includes("/revoke"));
  out.revoked = await text("token-status");
  await page.click("#introspect");
  await page.waitForFunction(() => document.getElementById("token-status").textContent.includes("/introspect"));
  out.afterRevocation = await text("token-status");

  // 2. A wrong secret: the error as the server gave it.
  await tokenWith("client_credentials", env.CLIENT_ID, "not-the-secret");
  out.refused = await text("http-response");

  // 3. An opaque token: not decodable here.
  await tokenWith("client_credentials", env.OPAQUE_ID, env.SECRET);
  out.opaque = await text("verification");

  // 4. A client id that is markup: shown as text, never run.
  await tokenWith("client_credentials", env.XSS_ID, env.SECRET);
  out.xssClaims = await text("jwt-claims");
  out.images = await page.locator("img").count();

  // 5. private_key_jwt: the key pasted, the assertion signed by WebCrypto; and a key made here.
  await page.selectOption("#grant", "private_key_jwt");
  await page.fill("#private-key", env.PK_JWK);
  await page.fill("#client-id", env.PK_ID);
  await page.click("#request-token");
  await page.waitForFunction(() => document.getElementById("http-response").textContent.startsWith("HTTP"));
  await page.waitForFunction(() => document.getElementById("verification").textContent !== "");
  out.assertion = { response: await text("http-response"), verification: await text("verification") };
  await page.click("#generate-key");
  await page.waitForFunction(() => document.getElementById("public-key").value !== "");
  out.generated = JSON.parse(await page.inputValue("#public-key"));

  // 6. Keyboard only: every control is reachable with Tab and labelled.
  out.unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea")].filter((e) => !document.querySelector(`label[for="${e.id}"]`)).map((e) => e.id));

  out.consoleErrorsBefore = [...consoleErrors];

  // 7. Framing is refused by the page's own headers; an inline script would be by its CSP.
  out.inlineBlocked = await inlineScriptBlocked(page);
}

try {
  await steps();
} catch (error) {
  // What the page showed when it failed (stderr; the harness prints it).
  for (const id of ["http-request", "http-response", "verification", "token-status"]) {
    console.error(id + ": " + (await page.textContent("#" + id).catch(() => "?")));
  }
  console.error("console errors: " + JSON.stringify(consoleErrors));
  console.error(error);
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log(JSON.stringify(out));
