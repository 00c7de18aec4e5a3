// The VM list with many VMs (issue 14: it stays fast with 1,000): first
// paint and the time until every row is drawn, from a fresh load of
// #/vms, then a filter, and bulk actions: ten VMs started, ten deleted.
// internal/webui/e2e_test.go runs it after creating the VMs; GOVISOR_URL,
// GOVISOR_TOKEN, WANT_VMS, ARTIFACTS, CHROMIUM.
import { check, env, login, run, step } from "./browser.mjs";

const want = Number(env("WANT_VMS"));

await run(async (page, shot) => {
  step("log in");
  await login(page, env("GOVISOR_URL"), env("GOVISOR_TOKEN"));
  step(`the list of ${want} VMs, from a fresh load`);
  await page.evaluate(() => (location.hash = "#/vms"));
  await page.waitForSelector("main[data-loaded]");
  await page.reload();
  const t = await page.evaluate(
    (want) =>
      new Promise((resolve) => {
        let fcp = -1;
        let rows = -1;
        const done = () => fcp >= 0 && rows >= 0 && resolve({ listFirstPaintMs: Math.round(fcp), listRowsMs: Math.round(rows) });
        new PerformanceObserver((l) => {
          for (const e of l.getEntries()) if (e.name === "first-contentful-paint") fcp = e.startTime;
          done();
        }).observe({ type: "paint", buffered: true });
        const poll = () =>
          document.querySelectorAll("#vm-table tbody tr[data-vm]").length >= want ? ((rows = performance.now()), done()) : requestAnimationFrame(poll);
        poll();
      }),
    want,
  );
  await shot("vms-many", false); // the first screen: 1,000 rows make a huge image
  step("filter them");
  const f = await page.evaluate(() => {
    const input = document.querySelector("#filter");
    const t0 = performance.now();
    input.value = "many-0042";
    input.dispatchEvent(new Event("input"));
    return { filterMs: Math.round(performance.now() - t0), rows: document.querySelectorAll("#vm-table tbody tr[data-vm]").length };
  });
  check(f.rows === 1, `filtered rows: ${f.rows}`);

  step("bulk: start ten VMs");
  const bulk = async (filter, action, confirm) => {
    await page.fill("#filter", filter);
    await page.check("#select-all");
    check((await page.innerText("#bulk-count")) === "10 selected:", `selected: ${await page.innerText("#bulk-count")}`);
    const t0 = Date.now();
    await page.click(`#bulk button[data-bulk="${action}"]`);
    if (confirm) {
      check((await page.innerText(`#bulk button[data-bulk="${action}"]`)).includes("Really"), "a bulk delete asks again");
      await page.click(`#bulk button[data-bulk="${action}"]`);
    }
    await page.waitForFunction(() => document.querySelector("#bulk")?.dataset.state === "done", null, { timeout: 60000 });
    check((await page.innerText("#bulk-status")).includes("10 of 10 done"), `bulk: ${await page.innerText("#bulk-status")}: ${await page.innerText("#list-status")}`);
    check(Number(await page.getAttribute("#bulk-progress", "value")) === 1, "the bulk progress bar is full");
    return Date.now() - t0;
  };
  const startMs = await bulk("many-000", "start", false);
  await page.waitForFunction(() => [...document.querySelectorAll("#vm-table tbody tr[data-vm] .state")].every((s) => s.textContent === "failed"), null, { timeout: 30000 });
  await shot("vms-bulk", false);
  await page.uncheck("#select-all");
  step("bulk: delete ten others");
  const deleteMs = await bulk("many-001", "delete", true);
  await page.waitForFunction(() => !document.querySelector("#vm-table tbody tr[data-vm]"));
  check((await page.innerText("#bulk-count")) === "Tick VMs for bulk actions.", "the deleted VMs left the selection");
  return { ...t, filterMs: f.filterMs, bulkStartMs: startMs, bulkDeleteMs: deleteMs };
});
