// End-to-end test of the web console with a real VM (KVM: in a lab host).
// internal/webui/lab_test.go brings two lab hosts up (one cluster, agents
// on TLS) and runs this script with:
//   GOVISOR_URL    https://LAB1:PORT (token GOVISOR_TOKEN)
//   MIGRATE_TO     the other lab host's name
//   KERNEL, INITRD the test guest's kernel and initramfs on the lab host
//                  (its /init runs a shell on the serial console)
//   ARTIFACTS, CHROMIUM as for run.mjs
// It creates and starts the VM from the form, types a command into the
// browser's serial console and reads the guest's answer, watches the CPU
// chart rise while the guest is busy, pauses, resumes and snapshots it,
// live-migrates it to MIGRATE_TO (its progress bar seen moving), uses its
// console again (the first agent reaches the VM through the other's) and
// stops it.
import { check, env, go, login, run, step } from "./browser.mjs";

const url = env("GOVISOR_URL");
const token = env("GOVISOR_TOKEN");

await run(async (page, shot) => {
  const result = {};
  const text = (sel) => page.locator(sel).innerText();
  const consoleText = () => page.evaluate(() => document.querySelector("#console").consoleText?.() ?? "");
  const waitConsole = async (want, timeout = 60000) => {
    try {
      await page.waitForFunction((w) => document.querySelector("#console").consoleText?.().includes(w), want, { timeout });
    } catch (e) {
      throw new Error(`the console never showed ${JSON.stringify(want)}; it shows:\n${await consoleText()}\n${e}`);
    }
  };
  const waitState = (s, timeout = 60000) =>
    page.waitForFunction((s) => document.querySelector("#vm-state")?.textContent === s, s, { timeout });

  step("log in");
  await login(page, url, token);

  step("create and start a VM from the form");
  await go(page, "#/create");
  await page.fill("#f-name", "web-vm");
  await page.fill("#f-memory", "128M");
  await page.fill("#f-kernel", env("KERNEL"));
  await page.fill("#f-initrd", env("INITRD"));
  await page.fill("#f-cmdline", "console=ttyS0 quiet");
  await page.click("#create-submit");
  await page.waitForFunction(() => location.hash === "#/vms/web-vm");
  const t0 = Date.now();
  await waitState("running");
  result.runningAfterMs = Date.now() - t0;

  step("the guest boots (its console log, GET /v1/vms/web-vm/console)");
  const consoleLog = () => page.evaluate(async () => (await fetch("/v1/vms/web-vm/console")).text());
  for (let i = 0; !(await consoleLog()).includes("GUEST-READY"); i++) {
    if (i === 120) throw new Error(`the guest did not boot in 2 minutes; its console log:\n${(await consoleLog()).slice(-3000)}`);
    await page.waitForTimeout(1000);
  }
  result.bootedAfterMs = Date.now() - t0;

  step("the serial console answers what is typed into it");
  await page.waitForFunction(() => document.querySelector("#console-status")?.textContent === "connected", null, { timeout: 30000 });
  await page.click("#console .xterm");
  // The shell may still be starting: type until it answers.
  for (let i = 0; ; i++) {
    await page.keyboard.type("echo govisor-$((6*7))\n");
    try {
      await waitConsole("govisor-42", 5000);
      break;
    } catch (e) {
      if (i === 8) throw new Error(`${e}\nthe console log:\n${(await consoleLog()).slice(-3000)}\nfocused: ${await page.evaluate(() => document.activeElement?.className)}`);
    }
  }
  result.consoleAnsweredAfterMs = Date.now() - t0;
  await shot("vm-console");

  step("the CPU chart rises while the guest is busy");
  await page.keyboard.type("while :; do :; done &\n");
  // The agents sample every 10 s: two samples after the loop began.
  await page.waitForFunction(() => Number(document.querySelector("#chart-cpu")?.dataset.last ?? 0) > 40, null, { timeout: 120000 });
  result.cpuPercent = Number(await page.getAttribute("#chart-cpu", "data-last"));
  await page.keyboard.type("kill %1\n");
  await shot("vm-charts");

  step("pause, resume, snapshot");
  await page.click('#vm-actions button[data-action="pause"]');
  await waitState("paused");
  await shot("vm-paused");
  await page.click('#vm-actions button[data-action="resume"]');
  await waitState("running");
  await page.fill("#snapshot-name", "snap1");
  await page.click('#vm-actions button[data-action="snapshot"]');
  await page.waitForFunction(() => document.querySelector("#snapshots")?.textContent?.includes("snap1"), null, { timeout: 60000 });
  check((await text("#vm-error")) === "", `error line: ${await text("#vm-error")}`);
  // The guest still answers after all that.
  await page.click("#console .xterm");
  await page.keyboard.type("echo after-$((7*6))\n");
  await waitConsole("after-42", 30000);
  await shot("vm-snapshot");

  step("live-migrate it to the other lab host, watching the progress bar");
  const to = env("MIGRATE_TO");
  await page.waitForSelector(`#migrate-to option[value="${to}"]`, { state: "attached" });
  await page.selectOption("#migrate-to", to);
  // A bandwidth cap makes the copy last long enough to watch.
  await page.fill("#migrate-bw", "8");
  // What the page shows of the migration, every 100 ms, in the page.
  await page.evaluate(() => {
    window.__mig = [];
    window.__migTimer = setInterval(() => {
      const m = document.querySelector("#migration");
      if (m) window.__mig.push({ text: m.textContent, value: Number(m.querySelector("progress")?.value) });
    }, 100);
  });
  const m0 = Date.now();
  // A lab host under TCG may stall its agent past the other's 5 s peer
  // timeout ("cannot reach the other host's agent"): the VM then keeps
  // running where it was, and a person would try again.
  for (let i = 0; ; i++) {
    await page.evaluate(() => (document.querySelector("#vm-error").textContent = ""));
    await page.click('#vm-actions button[data-action="migrate"]');
    await page.waitForFunction(
      (to) =>
        (document.querySelector('#vm-details dd[data-key="Host"]')?.textContent === to && document.querySelector("#vm-state")?.textContent === "running") ||
        document.querySelector("#vm-error")?.textContent,
      to,
      { timeout: 180000 },
    );
    const err = await text("#vm-error");
    if (!err) break;
    check(i < 2 && /cannot reach|deadline exceeded|no answer in time/.test(err), `migration failed: ${err}`);
    result.migrationRetried = err;
    await page.waitForSelector('#vm-actions button[data-action="migrate"]');
    await page.selectOption("#migrate-to", to);
    await page.fill("#migrate-bw", "8");
  }
  result.migrationMs = Date.now() - m0;
  // The status keeps the migration's outcome: the bar is full.
  await page.waitForSelector("#migration");
  const m = await text("#migration");
  check(m.startsWith(`completed to ${to}`), `migration: ${m}`);
  check(Number(await page.getAttribute("#migration progress", "value")) === 1, "the progress bar is full");
  result.migration = m;
  const seen = await page.evaluate(() => (clearInterval(window.__migTimer), window.__mig));
  const running = seen.filter((x) => x.text.startsWith("running"));
  check(running.length > 0, `the bar never showed a running migration: ${JSON.stringify(seen.slice(0, 5))}`);
  result.migrationBar = { samples: running.length, values: [...new Set(running.map((x) => x.value))].slice(0, 20) };
  await shot("vm-migrated");

  step("the console survives the migration (through the first host's agent)");
  await page.waitForFunction(() => document.querySelector("#console-status")?.textContent === "connected", null, { timeout: 60000 });
  await page.click("#console .xterm");
  for (let i = 0; ; i++) {
    await page.keyboard.type("echo moved-$((6*7))\n");
    try {
      await waitConsole("moved-42", 5000);
      break;
    } catch (e) {
      if (i === 6) throw e;
    }
  }
  await shot("vm-console-migrated");

  step("stop from the list");
  await go(page, "#/vms");
  await page.click('tr[data-vm="web-vm"] button[data-action="stop"]');
  await page.waitForFunction(() => document.querySelector('tr[data-vm="web-vm"] .state')?.textContent === "stopped", null, { timeout: 60000 });
  await shot("vms-stopped");
  return result;
});
