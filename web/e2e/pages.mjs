// The console's pages beyond the VM basics, driven in run.mjs's session
// (against a local agent, no KVM): alarms on the overview, the host page,
// the events page (live), the storage pool page (an empty volume, an
// image imported and converted with its progress bar, a delete), disks
// attached to and detached from a VM, the reports page (charts and the CSV
// download), and the cluster page (settings with a field error, the
// balance plan, maintenance entered and left, the cluster's events).
import { join } from "node:path";
import { check, go as goTo, step } from "./browser.mjs";

/**
 * morePages runs those steps on page, logged in to the agent of host
 * (whose pool is pool, and image a raw disk image file on it); shot takes
 * screenshots and art is their folder. It returns what the Go test checks
 * against the API.
 */
export async function morePages(page, shot, { host, pool, image, art }) {
  const result = {};
  const text = (sel) => page.locator(sel).innerText();
  const go = (hash) => goTo(page, hash);

  step("overview: alarms");
  await go("#/");
  await page.waitForFunction(() => document.querySelector("#alarms")?.textContent?.includes("e2e-vm1 failed"));
  check((await text("#alarms")).includes("VM e2e-vm1 failed: exit status 1"), `alarms: ${await text("#alarms")}`);
  await shot("overview-alarms");

  step("host page");
  await page.click(`#hosts a[data-host-link="${host}"]`);
  await page.waitForFunction((h) => location.hash === `#/hosts/${h}` && document.querySelector("main[data-loaded]"), host);
  check((await text("#host-state")) === "ready", `host state ${await text("#host-state")}`);
  check(Number(await text('#host-details dd[data-key="CPUs"]')) > 0, "the host's CPUs");
  check((await text("#host-vm-list")).includes("e2e-vm1"), `host VMs: ${await text("#host-vm-list")}`);
  await page.waitForSelector("#host-chart-cpu .uplot");
  await page.waitForFunction(() => Number(document.querySelector("#host-chart-cpu")?.dataset.points) > 0);
  await shot("host");

  step("events page: what happens shows at once");
  await go("#/events");
  await page.waitForFunction(() => document.querySelector("#events-stream")?.textContent === "stream open");
  check((await text("#events-table")).includes("e2e-vm1"), "the session's earlier events are listed");
  const before = await page.$$eval("#events-table tbody tr[data-vm]", (r) => r.length);
  // A change made elsewhere (here: a fetch of the page's own session,
  // with its CSRF token) arrives on the stream.
  await page.evaluate(async () => {
    const s = await (await fetch("/ui/api/session")).json();
    const r = await fetch("/v1/vms/zeta/start", { method: "POST", headers: { "X-CSRF-Token": s.csrfToken } });
    if (!r.ok) throw new Error(`start zeta: ${r.status}`);
  });
  await page.waitForFunction(() => document.querySelector('#events-table tbody tr[data-vm="zeta"]'));
  await page.waitForFunction(() => document.querySelector('#events-table tbody tr[data-vm="zeta"]')?.textContent?.includes("failed"), null, { timeout: 30000 });
  check((await page.$$eval("#events-table tbody tr[data-vm]", (r) => r.length)) > before, "new rows");
  await page.fill("#events-filter", "zeta failed");
  const rows = await page.$$eval("#events-table tbody tr", (r) => r.map((x) => x.getAttribute("data-vm")));
  check(rows.length > 0 && rows.every((v) => v === "zeta"), `filtered events: ${rows}`);
  await shot("events");

  step("storage: a pool's volumes, an empty one and an imported image");
  await go("#/pools");
  await page.click(`#pools a[href="#/pools/${pool}"]`);
  await page.waitForFunction((p) => location.hash === `#/pools/${p}` && document.querySelector("main[data-loaded]"), pool);
  await page.fill("#volume-form-name", "empty1");
  await page.fill("#volume-form-size", "lots");
  await page.click("#volume-form-submit");
  await page.waitForFunction(() => document.querySelector("#volume-form-size-err")?.textContent);
  check((await page.getAttribute("#volume-form-size", "aria-invalid")) === "true", "the size input is marked invalid");
  await page.fill("#volume-form-size", "64M");
  await page.click("#volume-form-submit");
  await page.waitForSelector('#volumes tr[data-volume="empty1"]');
  check((await text('#volumes tr[data-volume="empty1"]')).includes("64.0 MiB"), `volume row ${await text('#volumes tr[data-volume="empty1"]')}`);
  await page.fill("#volume-form-name", "imported.qcow2");
  await page.selectOption("#volume-form-mode", "from");
  await page.fill("#volume-form-from", image);
  // The bar shows while the agent converts; at the end it is full.
  const seen = page.waitForFunction(() => document.querySelector("#volume-progress")?.dataset.state === "running", null, { polling: 10 });
  await page.click("#volume-form-submit");
  await seen;
  await page.waitForFunction(() => document.querySelector("#volume-progress")?.dataset.state === "done", null, { timeout: 60000 });
  check(Number(await page.getAttribute("#volume-bar", "value")) === 1, "the progress bar is full");
  await page.waitForSelector('#volumes tr[data-volume="imported.qcow2"]');
  check((await text('#volumes tr[data-volume="imported.qcow2"]')).includes("qcow2"), "imported as qcow2");
  result.importProgress = await text("#volume-progress");
  // The fractions the bar showed while the agent converted (a fast
  // conversion may end before the first look).
  result.importSeen = (await page.getAttribute("#volume-progress", "data-seen")) ?? "";
  await shot("pool");

  step("disks: attach a volume to a VM, detach it");
  await go("#/vms/zeta");
  await page.fill("#attach-form-disk", `${pool}/nosuch`);
  await page.click("#attach-form-submit");
  await page.waitForFunction(() => document.querySelector("#attach-form-disk-err")?.textContent);
  await page.fill("#attach-form-disk", `${pool}/empty1`);
  await page.click("#attach-form-submit");
  await page.waitForSelector('#disks li[data-disk="0"]');
  check((await text("#disks")).includes(`${pool}/empty1`), `disks: ${await text("#disks")}`);
  check((await text("#attach-form-disk-err")) === "", "the field error went away");
  await shot("vm-disks");
  await go(`#/pools/${pool}`);
  check((await text('#volumes tr[data-volume="empty1"]')).includes("zeta"), "the volume says which VM uses it");
  await go("#/vms/zeta");
  await page.click('#disks button[data-detach="0"]');
  await page.waitForFunction(() => !document.querySelector("#disks li[data-disk]"));

  step("storage: delete a volume (a second click confirms)");
  await go(`#/pools/${pool}`);
  await page.click('#volumes button[data-delete="empty1"]');
  await page.click('#volumes button[data-delete="empty1"]');
  await page.waitForFunction(() => !document.querySelector('#volumes tr[data-volume="empty1"]'));

  step("reports: charts, the summary and the CSV");
  await go("#/reports");
  // The test agent samples every second: wait for a VM's row.
  for (let i = 0; !(await page.$('#report-table tr[data-vm="(host)"]')); i++) {
    if (i === 30) throw new Error("no host row in the report");
    await page.waitForTimeout(1000);
    await page.click("#report-refresh");
    await page.waitForTimeout(300);
  }
  await page.waitForSelector("#report-host-cpu .uplot");
  check(Number(await page.getAttribute("#report-host-cpu", "data-points")) > 0, "the host CPU chart has points");
  const dl = page.waitForEvent("download");
  await page.click("#report-csv");
  const d = await dl;
  const csvPath = join(art, "report.csv");
  await d.saveAs(csvPath);
  result.csv = { path: csvPath, from: await page.getAttribute("#report-csv", "data-from"), to: await page.getAttribute("#report-csv", "data-to"), rows: Number(await page.getAttribute("#report-csv", "data-rows")) };
  await shot("reports");

  step("cluster: settings, the balance plan, maintenance");
  await go("#/cluster");
  check((await page.inputValue("#settings-balance")) === "off", "balance starts off");
  await page.fill("#settings-balanceThreshold", "2");
  await page.click("#settings-submit");
  await page.waitForFunction(() => document.querySelector("#settings-balanceThreshold-err")?.textContent);
  check((await text("#settings-balanceThreshold-err")).includes("0 (the default, 0.15) to 1"), `threshold error: ${await text("#settings-balanceThreshold-err")}`);
  await page.fill("#settings-balanceThreshold", "0.25");
  await page.selectOption("#settings-haAdmission", "warn");
  await page.selectOption("#settings-balance", "manual");
  await page.fill("#settings-hostFailures", "1");
  await page.click("#settings-submit");
  await page.waitForFunction(() => document.querySelector("#settings-saved")?.textContent?.startsWith("Saved"));
  // The balancer plans with the band just saved.
  await page.click("#plan-refresh");
  await page.waitForFunction(() => document.querySelector("#plan-summary")?.textContent?.includes("(band 25%)"));
  result.plan = await text("#plan-summary");
  await shot("cluster");
  await page.click(`#maintenance-hosts tr[data-host="${host}"] button[data-maintenance="enter"]`);
  await page.waitForFunction(
    (h) => /maintenance/.test(document.querySelector(`#maintenance-hosts tr[data-host="${h}"] .state`)?.textContent ?? ""),
    host,
    { timeout: 30000 },
  );
  result.maintenance = await text(`#maintenance-hosts tr[data-host="${host}"] .state`);
  await shot("cluster-maintenance");
  await page.click(`#maintenance-hosts tr[data-host="${host}"] button[data-maintenance="leave"]`);
  await page.waitForFunction((h) => document.querySelector(`#maintenance-hosts tr[data-host="${h}"] .state`)?.textContent === "ready", host, { timeout: 30000 });

  step("events: the cluster's decisions with their reasons");
  await go("#/events");
  await page.waitForFunction(() => [...document.querySelectorAll('#events-table tr[data-kind="cluster"]')].some((r) => r.textContent.includes("maintenance")), null, { timeout: 30000 });
  result.clusterEvents = await page.$$eval('#events-table tr[data-kind="cluster"]', (rs) => rs.map((r) => r.textContent).slice(0, 4));
  await shot("events-cluster");
  return result;
}
