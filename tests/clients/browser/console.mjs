// The console in Debian's Chromium, driven by Playwright: as an operator would use it.
//   node console.mjs   -> runs the page; prints what it saw as JSON
// Environment: BASE (the listener's origin), CONSOLE_ID/CONSOLE_SECRET (a client that
// oauth.console_access names), NEW_ID (the client to create here), ROLE (its policy role),
// XSS_ID (a client whose id is markup), SCREENSHOT (where to save the overview; with APP_ID
// and APP_SECRET, after nine seconds of that client's tokens, for the docs' picture).
import { inlineScriptBlocked, openPage } from "./launch.mjs";

const env = process.env;
const { browser, page, dialogs, consoleErrors } = await openPage({ width: 1200, height: 1300 });
const out = { dialogs, consoleErrors };
const text = async (selector) => ((await page.textContent(selector)) || "").trim();
const number = async (id) => Number(await text("#" + id));

const response = await page.goto(env.BASE + "/console");
out.status = response.status();
out.csp = response.headers()["content-security-policy"];
out.frameOptions = response.headers()["x-frame-options"];

async function steps() {
  // 1. A wrong secret: not signed in, and why.
  await page.fill("#signin-client", env.CONSOLE_ID);
  await page.fill("#signin-secret", "not-the-secret");
  await page.click("#signin-button");
  await page.waitForFunction(() => document.getElementById("signin-status").textContent.startsWith("Not signed in"));
  out.wrongSecret = await text("#signin-status");

  // 2. Sign in with the console client's credentials (a token from /token, kept in memory).
  await page.fill("#signin-secret", env.CONSOLE_SECRET);
  await page.click("#signin-button");
  await page.waitForSelector("#workspace:not([hidden])");
  out.whoami = await text("#whoami");
  out.stored = await page.evaluate(() => localStorage.length + sessionStorage.length + document.cookie.length);
  await page.waitForFunction(() => document.querySelectorAll("#rate-chart polyline").length > 0);
  const issuedBefore = await number("issued-total");

  // 3. Create a client: its secret shown once, then used over HTTP (as its service would).
  await page.click("nav button[data-tab=clients]");
  await page.fill("#create-id", env.NEW_ID);
  await page.fill("#create-scope", "read write");
  await page.fill("#create-role", env.ROLE);
  await page.click("#create-form button[type=submit]");
  await page.waitForSelector("#secret-once:not([hidden])");
  const secret = await text("#secret-value");
  out.secretShownFor = await text("#secret-client");
  await page.click("#secret-done");
  out.secretAfterDone = await text("#secret-value");
  await page.waitForSelector(`#clients tr[data-client="${env.NEW_ID}"]`);
  out.newRow = await text(`#clients tr[data-client="${env.NEW_ID}"]`);
  // Markup in a client id is text: no image element, no dialog.
  out.xssRow = await text(`#clients tr[data-client="${env.XSS_ID.replace(/"/g, '\\"')}"] td`);
  out.images = await page.locator("img").count();

  const basic = "Basic " + Buffer.from(encodeURIComponent(env.NEW_ID) + ":" + encodeURIComponent(secret)).toString("base64");
  const issued = await fetch(env.BASE + "/token", {
    method: "POST",
    headers: { "Authorization": basic, "Content-Type": "application/x-www-form-urlencoded" },
    body: "grant_type=client_credentials&scope=read",
  });
  out.tokenStatus = issued.status;
  out.accessToken = (await issued.json()).access_token;

  // 4. The overview sees it: the issued count rises on its next poll.
  await page.click("nav button[data-tab=overview]");
  await page.waitForFunction((before) => Number(document.getElementById("issued-total").textContent) > before, issuedBefore, { timeout: 10000 });
  out.issuedBefore = issuedBefore;
  out.issuedAfter = await number("issued-total");
  out.ratePoints = await page.getAttribute("#rate-chart polyline", "points");
  out.rateLabel = await page.getAttribute("#rate-chart", "aria-label");
  out.throttled = await text("#throttled tbody");
  out.refusals = await page.$$eval("#refusals tbody tr", (rows) => rows.map((r) => [r.cells[0].textContent, r.cells[1].textContent]));
  if (env.SCREENSHOT && env.APP_ID) {
    // Some traffic for the picture (docs/console.png): another client's tokens for a few seconds.
    const appBasic = "Basic " + Buffer.from(env.APP_ID + ":" + env.APP_SECRET).toString("base64");
    let loading = true;
    const load = (async () => {
      while (loading) {
        await fetch(env.BASE + "/token", {
          method: "POST",
          headers: { "Authorization": appBasic, "Content-Type": "application/x-www-form-urlencoded" },
          body: "grant_type=client_credentials",
        });
      }
    })();
    await page.waitForTimeout(9000);
    await page.screenshot({ path: env.SCREENSHOT, fullPage: true });
    loading = false;
    await load;
  } else if (env.SCREENSHOT) {
    await page.screenshot({ path: env.SCREENSHOT, fullPage: true });
  }

  // 5. Its session, revoked here.
  await page.click("nav button[data-tab=sessions]");
  await page.fill("#sessions-client", env.NEW_ID);
  await page.click("#sessions-form button[type=submit]");
  await page.waitForSelector("#sessions tr[data-session] button");
  out.sessionRow = await text("#sessions tr[data-session]");
  await page.click("#sessions tr[data-session] button");
  await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Revoked"));
  out.revokedMessage = await text("#message");
  out.liveAfter = await page.locator("#sessions tr[data-session]").count();
  const introspected = await fetch(env.BASE + "/introspect", {
    method: "POST",
    headers: { "Authorization": basic, "Content-Type": "application/x-www-form-urlencoded" },
    body: "token=" + encodeURIComponent(out.accessToken),
  });
  out.introspectedAfter = await introspected.json();

  // 6. The audit trail shows it.
  await page.click("nav button[data-tab=audit]");
  await page.fill("#audit-client", env.NEW_ID);
  await page.selectOption("#audit-event", "token revoked");
  await page.click("#audit-form button[type=submit]");
  await page.waitForSelector("#audit tbody tr td + td");
  out.auditRows = await page.$$eval("#audit tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));

  // 7. Edit, deactivate, rotate: the client row follows.
  await page.click("nav button[data-tab=clients]");
  const row = `#clients tr[data-client="${env.NEW_ID}"]`;
  await page.waitForSelector(row);
  await page.click(`${row} button:has-text("Edit")`);
  await page.fill("#edit-scope", "read");
  await page.click("#edit-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Saved"));
  await page.click(`${row} button:has-text("Rotate secret")`);
  await page.waitForSelector("#secret-once:not([hidden])");
  out.rotatedSecretDiffers = (await text("#secret-value")) !== secret && (await text("#secret-value")).length > 20;
  await page.click("#secret-done");
  await page.click(`${row} button:has-text("Deactivate")`);
  await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Deactivated"));
  await page.waitForSelector(`${row} button:has-text("Activate")`);
  out.editedRow = await text(row);

  // 8. Keys: rotate ES256; the new active key is listed.
  await page.click("nav button[data-tab=keys]");
  await page.click("#rotate-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Rotated"));
  out.rotated = await text("#message");
  out.keyStates = await page.$$eval("#keys tbody tr", (rows) => rows.map((r) => r.cells[2].textContent));

  // 9. Every control is labelled; nav buttons are buttons (keyboard-reachable).
  out.unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, select")].filter((e) => !document.querySelector(`label[for="${e.id}"]`) && !e.closest("label")).map((e) => e.id));
  await page.focus("nav button[data-tab=overview]");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  out.keyboardTab = await page.getAttribute("nav button[data-tab=clients]", "aria-pressed");

  // 10. On a phone: nothing wider than the screen but the tables' own scrolling.
  await page.click("nav button[data-tab=clients]");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  out.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.setViewportSize({ width: 1200, height: 1300 });

  // 11. Sign out: the token is gone from the page.
  await page.click("#signout");
  out.signedOut = await text("#signin-status");
  out.errorsBeforeInjection = [...consoleErrors];
  out.inlineBlocked = await inlineScriptBlocked(page);
}

try {
  await steps();
} catch (error) {
  for (const id of ["signin-status", "message", "whoami"]) {
    console.error(id + ": " + (await page.textContent("#" + id).catch(() => "?")));
  }
  console.error("console errors: " + JSON.stringify(consoleErrors));
  console.error(error);
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log(JSON.stringify(out));
