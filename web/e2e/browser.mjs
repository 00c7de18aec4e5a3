// What the end-to-end scripts share: headless chromium (Debian's, given by
// $CHROMIUM; never downloaded) in a fresh profile, and small helpers.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

/** env returns the environment variable k, which must be set. */
export function env(k) {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
}

/** check throws naming what when ok is false. */
export function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

/** step says what the script does next. */
export const step = (s) => console.log(`step: ${s}`);

/**
 * run launches the browser, calls body(page, shot) and reports: "RESULT
 * {json}" with what body returns, or the failure (with a failure.png
 * screenshot) and exit code 1. Screenshots go to $ARTIFACTS.
 */
export async function run(body) {
  const out = env("ARTIFACTS");
  const profile = mkdtempSync(join(tmpdir(), "govisor-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: env("CHROMIUM"),
    headless: true,
    ignoreHTTPSErrors: true, // the agents' self-signed test certificates
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  ctx.setDefaultTimeout(15000);
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const shot = (name, fullPage = true) => page.screenshot({ path: join(out, `${name}.png`), fullPage });
  try {
    const result = await body(page, shot);
    check(errors.length === 0, `page errors: ${errors.join("; ")}`);
    console.log(`RESULT ${JSON.stringify(result ?? {})}`);
  } catch (e) {
    await shot("failure").catch(() => {});
    console.error(`FAILED at ${page.url()}: ${e.stack ?? e}`);
    process.exitCode = 1;
  } finally {
    await ctx.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

/** login opens the console at url and logs in with token. */
export async function login(page, url, token) {
  await page.goto(`${url}/ui/`);
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("main[data-loaded]");
}

/** go opens a page of the console and waits until it has its data. */
export async function go(page, hash) {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.waitForFunction((h) => location.hash === h && document.querySelector("main[data-loaded]"), hash);
}
