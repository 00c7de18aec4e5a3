// A host's page: what it is (processor, memory, labels, agent), its
// measured load and its VMs' loads (charted over time for the agent's own
// host), its VMs, and maintenance mode.
import { api } from "../api";
import { coalesce, h, replace } from "../dom";
import { onEvent } from "../events";
import { errorText } from "../forms";
import { bytes, rates, stateOf } from "../model";
import { chart, type Chart } from "../charts";
import type { Host } from "../types";

/** hostLink links to a host's page. */
export function hostLink(name: string): HTMLElement {
  return h("a", { href: `#/hosts/${encodeURIComponent(name)}`, "data-host-link": name }, name);
}

/**
 * maintenanceButton enters or leaves maintenance mode on host x, then
 * calls done; an error replaces the button's label until the next load.
 */
export function maintenanceButton(x: Host, done: () => Promise<void>): HTMLElement {
  const inMaint = x.state === "maintenance" || x.state === "entering-maintenance";
  const b = h("button", { "data-maintenance": inMaint ? "leave" : "enter" }, inMaint ? "Leave maintenance" : "Enter maintenance");
  const err = h("span", { class: "error", role: "alert" });
  b.addEventListener("click", async () => {
    b.disabled = true;
    err.textContent = "";
    try {
      await api.maintenance(x.name, !inMaint);
      await done();
    } catch (e) {
      err.textContent = ` ${errorText(e)}`;
      b.disabled = false;
    }
  });
  return h("span", {}, b, err);
}

/** hostPage renders host name's page, refreshed every 5 s and on VM events. */
export function hostPage(main: HTMLElement, name: string): () => void {
  const title = h("h1", {}, "Host ", name, " ", h("span", { id: "host-state", class: "state" }, "…"));
  const error = h("p", { id: "host-error", class: "error", role: "alert" });
  const toolbar = h("div", { id: "host-actions", class: "toolbar" });
  const details = h("dl", { id: "host-details" });
  const loadBox = h("div", { id: "host-load" });
  const vmsBox = h("div", { id: "host-vms" });
  const charts = h("div", { class: "charts", id: "host-charts" });
  replace(main, title, error, toolbar, h("div", { class: "columns" }, h("section", {}, h("h2", {}, "Host"), details), h("section", {}, h("h2", {}, "Load"), loadBox)), charts, h("h2", {}, "VMs"), vmsBox);
  let gone = false;
  // The agent serving the page samples its own host (GET /v1/usage): that
  // host's page charts its last 30 minutes.
  let drawn: Chart[] = [];
  let making: Promise<Chart[]> | null = null;
  async function usage(): Promise<void> {
    const rep = await api.usage({ from: new Date(Date.now() - 30 * 60_000) }).catch(() => null);
    if (gone || !rep || rep.host !== name) return;
    if (!making) {
      const cpu = h("div", { id: "host-chart-cpu", class: "chart" });
      const mem = h("div", { id: "host-chart-mem", class: "chart" });
      replace(charts, cpu, mem);
      making = Promise.all([chart(cpu, "CPU busy", ["cpu"], ["% of a CPU"], "% of a CPU"), chart(mem, "Memory in use", ["memMiB"], ["MiB"], "MiB")]);
    }
    drawn = await making;
    if (gone) return;
    const s = rates(rep.samples ?? [], "");
    drawn.forEach((c) => c.set(s));
  }
  async function load(): Promise<void> {
    try {
      const [hosts, vms] = await Promise.all([api.hosts(), api.vms()]);
      if (gone) return;
      const x = hosts.find((y) => y.name === name);
      if (!x) {
        error.textContent = `no host ${name} in the cluster`;
        main.setAttribute("data-loaded", "true");
        return;
      }
      error.textContent = "";
      const st = title.querySelector("#host-state")!;
      st.textContent = x.state ?? "ready";
      st.className = `state host-${x.state ?? "ready"}`;
      replace(toolbar, maintenanceButton(x, load));
      const row = (k: string, v: string | number | undefined | null) => (v === undefined || v === null || v === "" ? null : [h("dt", {}, k), h("dd", { "data-key": k }, String(v))]);
      const labels = Object.entries(x.labels ?? {}).map(([k, v]) => `${k}=${v}`);
      replace(
        details,
        row("Leader", x.leader ? "yes: runs the cluster's controllers" : "no"),
        row("CPUs", x.cpus),
        row("Processor", [x.cpuVendor, x.cpuModel].filter(Boolean).join(" ")),
        row("Memory", x.memoryMiB === undefined ? undefined : bytes(x.memoryMiB * 1048576)),
        row("Allocated", x.allocatedMiB === undefined ? undefined : `${x.allocatedMiB} MiB to VMs desired running`),
        row("Labels", labels.join(", ") || "(none)"),
        row("Agent", [x.version, x.agentId].filter(Boolean).join(", ")),
        row("API", (x.api ?? []).join(", ")),
        row("Store", x.store),
        row("Started", x.started ? new Date(x.started).toLocaleString() : undefined),
        row("CPU features", (x.cpuFeatures ?? []).length ? `${(x.cpuFeatures ?? []).length} flags` : undefined),
        (x.stuck ?? []).length ? [h("dt", {}, "Cannot leave"), h("dd", { class: "error", "data-key": "Cannot leave" }, (x.stuck ?? []).join("; "))] : null,
      );
      const l = x.load;
      const perVM = Object.entries(l?.vms ?? {}).sort((a, b) => (b[1].cpuBusy ?? 0) - (a[1].cpuBusy ?? 0));
      replace(
        loadBox,
        l
          ? [
              h("p", { id: "host-cpu" }, `CPUs busy: ${(l.cpuBusy ?? 0).toFixed(2)} of ${x.cpus ?? "?"}; memory in use: ${l.memoryUsedMiB ?? 0} MiB`, l.time ? h("span", { class: "muted" }, ` (at ${new Date(l.time).toLocaleTimeString()})`) : null),
              perVM.length
                ? h(
                    "table",
                    { id: "host-vm-load" },
                    h("thead", {}, h("tr", {}, ["VM", "CPUs busy", "Resident memory"].map((c) => h("th", {}, c)))),
                    h("tbody", {}, perVM.map(([vm, v]) => h("tr", { "data-vm": vm }, h("td", {}, vm), h("td", {}, (v.cpuBusy ?? 0).toFixed(2)), h("td", {}, `${v.memoryMiB ?? 0} MiB`)))),
                  )
                : null,
            ]
          : h("p", { class: "muted" }, "Not measured yet."),
      );
      const here = vms.filter((v) => (v.status?.host || v.host) === name).sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1));
      replace(
        vmsBox,
        here.length
          ? h(
              "table",
              { id: "host-vm-list" },
              h("thead", {}, h("tr", {}, ["VM", "State", "vCPUs", "Memory"].map((c) => h("th", {}, c)))),
              h(
                "tbody",
                {},
                here.map((v) =>
                  h(
                    "tr",
                    { "data-vm": v.spec.name },
                    h("td", {}, h("a", { href: `#/vms/${encodeURIComponent(v.spec.name)}` }, v.spec.name)),
                    h("td", {}, h("span", { class: `state state-${stateOf(v)}` }, stateOf(v))),
                    h("td", {}, v.spec.cpus ?? 1),
                    h("td", {}, v.spec.memory ?? "256M"),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted" }, "No VMs on this host."),
      );
      main.setAttribute("data-loaded", "true");
    } catch (e) {
      if (!gone) error.textContent = errorText(e);
    }
  }
  load();
  usage();
  const off = onEvent(coalesce(load));
  const timer = setInterval(() => (load(), usage()), 5000);
  return () => {
    gone = true;
    off();
    clearInterval(timer);
    making?.then((cs) => cs.forEach((c) => c.close()));
  };
}
