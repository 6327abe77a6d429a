// What the browser tests share: Debian's Chromium driven by Playwright (its own browser
// download is not used), a page with its dialogs and console errors watched, and the check
// that the page's Content-Security-Policy refuses an inline script.
import { chromium } from "playwright-core";

export async function openPage(viewport) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // As root (CI), Chromium refuses its own sandbox.
    args: ["--no-sandbox"],
  });
  const page = await browser.newPage({ viewport });
  const dialogs = [];
  page.on("dialog", async (dialog) => { dialogs.push(dialog.message()); await dialog.dismiss(); });
  const consoleErrors = [];
  page.on("console", (message) => { if (message.type() === "error") consoleErrors.push(message.text()); });
  return { browser, page, dialogs, consoleErrors };
}

// Whether an inline script added to the page was refused (a CSP violation, or it never ran).
export function inlineScriptBlocked(page) {
  return page.evaluate(() => new Promise((resolve) => {
    document.addEventListener("securitypolicyviolation", () => resolve(true), { once: true });
    const s = document.createElement("script");
    s.textContent = "window.__ran = true";
    document.body.appendChild(s);
    setTimeout(() => resolve(window.__ran !== true), 500);
  }));
}
