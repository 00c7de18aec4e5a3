// End-to-end test of the web console in headless chromium against agents
// without KVM. internal/webui/e2e_test.go starts the agents and runs this
// script with:
//   GOVISOR_URL        https://127.0.0.1:PORT of an agent (token GOVISOR_TOKEN)
//   GOVISOR_SHORT_URL  an agent whose sessions last SHORT_TTL_MS
//   KERNEL             a file to give as the kernel in the create form
//   POOL, IMAGE        a storage pool, and a raw image file to import into it
//   POOL2_DIR          a folder for a pool defined and deleted in the browser
//   ARTIFACTS          folder for the screenshots
//   CHROMIUM           the browser
// It prints "RESULT {json}" (timings) and exits non-zero on a failure.
import { check, env, go as goTo, run, step } from "./browser.mjs";
import { morePages } from "./pages.mjs";

const url = env("GOVISOR_URL");
const shortURL = env("GOVISOR_SHORT_URL");
const token = env("GOVISOR_TOKEN");
const kernel = env("KERNEL");
const shortTTL = Number(env("SHORT_TTL_MS"));

await run(async (page, shot) => {
  const result = {};
  const text = (sel) => page.locator(sel).innerText();
  const loaded = () => page.waitForSelector("main[data-loaded]");
  const go = (hash) => goTo(page, hash);

  step("a wrong token is refused");
  await page.goto(`${url}/ui/`);
  await page.waitForSelector("#login-form");
  await page.fill("#token", "not-the-token");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#login-error")?.textContent?.includes("wrong token"));
  await shot("login-wrong-token");
  check((await page.context().cookies()).length === 0, "no cookie after a wrong token");

  step("log in");
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await loaded();
  const cookies = await page.context().cookies();
  const c = cookies.find((x) => x.name === "govisor_session");
  check(c && c.httpOnly && c.secure && c.sameSite === "Strict", `session cookie ${JSON.stringify(cookies)}`);
  check(!(await page.evaluate(() => document.cookie)).includes("govisor_session"), "the script cannot read the session cookie");

  step("overview, measured from a fresh load");
  await page.reload();
  // First contentful paint (the nav bar and headings) and the moment the
  // overview holds the agent's data, both from the navigation's start.
  const t = await page.evaluate(
    () =>
      new Promise((resolve) => {
        let fcp = -1;
        let data = -1;
        const done = () => fcp >= 0 && data >= 0 && resolve({ firstPaintMs: Math.round(fcp), overviewDataMs: Math.round(data) });
        new PerformanceObserver((l) => {
          for (const e of l.getEntries()) if (e.name === "first-contentful-paint") fcp = e.startTime;
          done();
        }).observe({ type: "paint", buffered: true });
        const poll = () => (document.querySelector("main[data-loaded]") ? ((data = performance.now()), done()) : requestAnimationFrame(poll));
        poll();
      }),
  );
  Object.assign(result, t);
  await page.waitForSelector('#hosts tr[data-host="e2ehost"]');
  check((await text('#hosts tr[data-host="e2ehost"]')).includes("ready"), `host row: ${await text('#hosts tr[data-host="e2ehost"]')}`);
  check((await text("#states")).includes("2 stopped"), `states: ${await text("#states")}`);
  await shot("overview");

  step("create form: the API's errors next to their fields");
  await go("#/create");
  await page.fill("#f-name", "Bad_Name");
  await page.fill("#f-kernel", kernel);
  await page.click("#create-submit");
  await page.waitForFunction(() => document.querySelector("#err-name")?.textContent);
  check((await text("#err-name")).includes("DNS label"), `name error: ${await text("#err-name")}`);
  check((await page.getAttribute("#f-name", "aria-invalid")) === "true", "the name input is marked invalid");
  await page.fill("#f-name", "e2e-vm1");
  await page.fill("#f-kernel", "/no/such/kernel");
  await page.click("#create-submit");
  await page.waitForFunction(() => document.querySelector("#err-kernel")?.textContent);
  check((await text("#err-name")) === "", "the name error went away");
  await shot("create-errors");

  step("create a VM");
  await page.fill("#f-kernel", kernel);
  await page.fill("#f-cpus", "2");
  await page.fill("#f-memory", "128M");
  await page.selectOption("#f-restartPolicy", "never");
  await page.check("#f-ha");
  await page.selectOption("#f-restartPriority", "high");
  await page.uncheck("#f-start");
  await page.click("#create-submit");
  await page.waitForFunction(() => location.hash === "#/vms/e2e-vm1" && document.querySelector("main[data-loaded]"));
  // pending until the agent's reconciler records it stopped (a live event)
  await page.waitForFunction(() => document.querySelector("#vm-state")?.textContent === "stopped");
  check((await text("#vm-details")).includes("128M"), "the definition shows the memory");
  check((await text('#vm-details dd[data-key="HA"]')).includes("high restart priority"), "the definition shows HA");
  for (const c of ["cpu", "mem", "disk", "net"]) await page.waitForSelector(`#chart-${c} .uplot`);
  await shot("vm-detail");

  step("VM list: filter and sort");
  await go("#/vms");
  const names = () => page.$$eval("#vm-table tbody tr[data-vm]", (rs) => rs.map((r) => r.getAttribute("data-vm")));
  check(JSON.stringify(await names()) === JSON.stringify(["alpha", "e2e-vm1", "zeta"]), `rows ${await names()}`);
  await shot("vms");
  await page.click('th[data-sort="name"]'); // now descending
  check(JSON.stringify(await names()) === JSON.stringify(["zeta", "e2e-vm1", "alpha"]), `sorted rows ${await names()}`);
  await page.click('th[data-sort="memory"]');
  await page.fill("#filter", "vm1"); // "e2e" would match every VM: the host is e2ehost
  check(JSON.stringify(await names()) === JSON.stringify(["e2e-vm1"]), `filtered rows ${await names()}`);
  await shot("vms-sorted");

  step("start from the list: the agent runs the VMM (here /bin/false, so it fails)");
  await page.click('tr[data-vm="e2e-vm1"] button[data-action="start"]');
  await page.waitForFunction(() => document.querySelector('tr[data-vm="e2e-vm1"] .state')?.textContent === "failed", null, { timeout: 30000 });

  step("a POST without the CSRF token is refused");
  const csrf = await page.evaluate(async () => {
    const r = await fetch("/v1/vms/alpha/start", { method: "POST" });
    return { status: r.status, body: await r.text() };
  });
  check(csrf.status === 403 && csrf.body.includes("X-CSRF-Token"), `CSRF-less POST: ${JSON.stringify(csrf)}`);

  step("overview: live events and states");
  await go("#/");
  await page.waitForFunction(() => document.querySelector("#events")?.textContent?.includes("e2e-vm1"));
  check((await text("#states")).includes("failed"), `states: ${await text("#states")}`);
  await shot("overview-events");

  step("delete a VM from its page (a second click confirms)");
  await go("#/vms/alpha");
  await page.click('#vm-actions button[data-action="delete"]');
  check((await text('#vm-actions button[data-action="delete"]')).includes("Really"), "the first click asks again");
  await page.click('#vm-actions button[data-action="delete"]');
  await page.waitForFunction(() => location.hash === "#/vms" && document.querySelector("main[data-loaded]"));
  await page.waitForFunction(() => !document.querySelector('tr[data-vm="alpha"]'));

  step("networks and pools");
  await go("#/networks");
  check((await text("main")).includes("No networks"), "networks page");
  // Refused definitions only: a network makes a bridge on the host.
  await page.fill("#network-form-name", "Bad_Name");
  await page.click("#network-form-submit");
  await page.waitForFunction(() => document.querySelector("#network-form-name-err")?.textContent?.includes("DNS label"));
  await page.fill("#network-form-name", "lan");
  await page.fill("#network-form-cidr", "10.9.0.0/24");
  await page.click("#network-form-submit");
  await page.waitForFunction(() => document.querySelector("#network-form-cidr-err")?.textContent?.includes("own address"));
  check((await text("#network-form-name-err")) === "", "the name error went away");
  await shot("networks");
  await go("#/pools");
  await page.waitForSelector('#pools tr[data-name="e2e-pool"]');
  await page.fill("#pool-form-name", "e2e-pool2");
  await page.fill("#pool-form-path", env("POOL2_DIR"));
  await page.click("#pool-form-submit");
  await page.waitForSelector('#pools tr[data-name="e2e-pool2"]');
  await shot("pools");
  await page.click('#pools button[data-delete="e2e-pool2"]');
  await page.click('#pools button[data-delete="e2e-pool2"]');
  await page.waitForFunction(() => !document.querySelector('#pools tr[data-name="e2e-pool2"]'));

  Object.assign(result, await morePages(page, shot, { host: "e2ehost", pool: env("POOL"), image: env("IMAGE"), art: env("ARTIFACTS") }));

  step("log out");
  await page.click("nav .logout");
  await page.waitForSelector("#login-form");
  const after = await page.evaluate(async () => (await fetch("/v1/vms")).status);
  check(after === 401, `API after logout: ${after}`);

  step("an expired session is refused");
  await page.goto(`${shortURL}/ui/`);
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await loaded();
  await page.waitForTimeout(shortTTL + 500);
  await page.click('nav a[href="#/vms"]');
  await page.waitForFunction(() => document.querySelector("#login-error")?.textContent?.includes("session expired"));
  await shot("session-expired");
  await page.reload();
  await page.waitForSelector("#login-form");

  step("failed logins are rate-limited");
  for (let i = 0; ; i++) {
    await page.fill("#token", `guess-${i}`);
    await page.click("#login-form button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#login-error")?.textContent);
    const msg = await text("#login-error");
    if (msg.includes("too many failed logins")) break;
    check(msg.includes("wrong token") && i < 5, `login ${i}: ${msg}`);
    await page.evaluate(() => (document.querySelector("#login-error").textContent = ""));
  }
  // Even the right token waits now.
  await page.evaluate(() => (document.querySelector("#login-error").textContent = ""));
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#login-error")?.textContent?.includes("too many failed logins"));
  await shot("login-rate-limited");

  return result;
});
