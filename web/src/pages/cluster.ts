// The cluster page: HA admission and load balancer settings (GET/PUT
// /v1/cluster/settings), maintenance mode of each host (PUT
// /v1/hosts/{host}/maintenance) and the balancer's plan (GET
// /v1/cluster/balance; POST carries it out), api/openapi.yaml.
import { api } from "../api";
import { coalesce, h, replace } from "../dom";
import { onEvent } from "../events";
import { errorText, Form, select } from "../forms";
import { hostLink, maintenanceButton } from "./host";
import { settingsFrom } from "../model";
import type { BalancePlan, Host } from "../types";

const pct = (x: number | undefined) => (x === undefined ? "-" : `${(x * 100).toFixed(0)}%`);

/** planView shows a balance plan: the spread before and after, the moves and each host's load. */
export function planView(p: BalancePlan, applied: boolean): HTMLElement {
  const moves = p.moves ?? [];
  return h(
    "div",
    { id: "plan", "data-moves": moves.length, "data-balanced": String(!!p.balanced) },
    h(
      "p",
      { id: "plan-summary" },
      `Spread of the hosts' loads: ${pct(p.before)} now, ${pct(p.after)} after ${moves.length} migration${moves.length === 1 ? "" : "s"} (band ${pct(p.threshold)}). `,
      p.balanced ? "Balanced." : "Not balanced.",
      p.why ? ` ${p.why}` : "",
    ),
    moves.length
      ? h(
          "table",
          { id: "plan-moves" },
          h("thead", {}, h("tr", {}, ["VM", "From", "To", "Disks", "Why", applied ? "Outcome" : null].filter(Boolean).map((c) => h("th", {}, c as string)))),
          h(
            "tbody",
            {},
            moves.map((m) =>
              h(
                "tr",
                { "data-vm": m.vm },
                h("td", {}, h("a", { href: `#/vms/${encodeURIComponent(m.vm)}` }, m.vm)),
                h("td", {}, m.from),
                h("td", {}, m.to),
                h("td", {}, m.mirror ? "mirrored" : "shared"),
                h("td", {}, m.reason ?? ""),
                applied ? h("td", { class: m.error ? "error" : "" }, m.error ? m.error : "done") : null,
              ),
            ),
          ),
        )
      : null,
    (p.loads ?? []).length
      ? h(
          "table",
          { id: "plan-loads" },
          h("thead", {}, h("tr", {}, ["Host", "Load now", "After"].map((c) => h("th", {}, c)))),
          h("tbody", {}, (p.loads ?? []).map((l) => h("tr", { "data-host": l.host }, h("td", {}, l.host), h("td", {}, pct(l.before)), h("td", {}, pct(l.after))))),
        )
      : null,
  );
}

/** clusterPage renders the cluster's settings, hosts and balance plan. */
export function clusterPage(main: HTMLElement): () => void {
  const saved = h("p", { id: "settings-saved", class: "note" });
  const form = new Form("settings", async (v) => {
    const s = await api.putSettings(settingsFrom(v));
    fill(s);
    saved.textContent = `Saved at ${new Date().toLocaleTimeString()}.`;
  });
  const fields = {
    haAdmission: select([["off", "off: no check"], ["warn", "warn: start, with a warning"], ["refuse", "refuse: refuse the start"]]),
    hostFailures: h("input", { type: "number", min: "0", max: "16", value: "1" }),
    balance: select([["off", "off"], ["manual", "manual: plans on request"], ["automatic", "automatic: every 30 s"]]),
    balanceThreshold: h("input", { type: "number", min: "0", max: "1", step: "0.01", value: "0.15" }),
  };
  form.row("haAdmission", "HA admission", fields.haAdmission, "when a VM start would leave too little room to restart the HA VMs of failed hosts");
  form.row("hostFailures", "Host failures", fields.hostFailures, "how many hosts may fail at once");
  form.row("balance", "Load balancer", fields.balance);
  form.row("balanceThreshold", "Balance band", fields.balanceThreshold, "hosts whose loads (0 to 1) differ by at most this are balanced");
  form.finish("Save settings");
  const fill = (s: { haAdmission?: string; hostFailures?: number; balance?: string; balanceThreshold?: number }) => {
    fields.haAdmission.value = s.haAdmission || "off";
    fields.hostFailures.value = String(s.hostFailures ?? 1);
    fields.balance.value = s.balance || "off";
    fields.balanceThreshold.value = String(s.balanceThreshold ?? 0.15);
  };

  const hostsBox = h("div", { id: "cluster-hosts" }, h("p", {}, "Loading…"));
  const planBox = h("div", { id: "plan-box" });
  const planError = h("p", { id: "plan-error", class: "error", role: "alert" });
  const planButton = h("button", { id: "plan-refresh" }, "Plan");
  const applyButton = h("button", { id: "plan-apply", disabled: true }, "Carry out the plan");
  let plan: BalancePlan | null = null;

  async function loadPlan(): Promise<void> {
    planError.textContent = "";
    try {
      plan = await api.balancePlan();
      replace(planBox, planView(plan, false));
      applyButton.disabled = !(plan.moves ?? []).length;
    } catch (e) {
      planError.textContent = errorText(e);
    }
  }
  planButton.addEventListener("click", loadPlan);
  applyButton.addEventListener("click", async () => {
    planError.textContent = "";
    applyButton.disabled = planButton.disabled = true;
    replace(planBox, h("p", {}, h("progress", { id: "plan-progress" }), ` carrying out ${(plan?.moves ?? []).length} migrations…`));
    try {
      replace(planBox, planView(await api.applyBalance(), true));
    } catch (e) {
      planError.textContent = errorText(e);
    } finally {
      planButton.disabled = false;
    }
  });

  let gone = false;
  const loadHosts = async (): Promise<void> => {
    try {
      const hosts = await api.hosts();
      if (!gone) replace(hostsBox, hostsTable(hosts, loadHosts));
    } catch (e) {
      if (!gone) replace(hostsBox, h("p", { class: "error" }, errorText(e)));
    }
  };

  replace(
    main,
    h("h1", {}, "Cluster"),
    h("h2", {}, "Settings"),
    form.el,
    saved,
    h("h2", {}, "Hosts and maintenance"),
    hostsBox,
    h("h2", {}, "Load balance"),
    h("div", { class: "toolbar" }, planButton, applyButton),
    planError,
    planBox,
  );
  Promise.all([api.settings().then(fill), loadHosts(), loadPlan()])
    .then(() => main.setAttribute("data-loaded", "true"))
    .catch((e) => form.show(e));
  // VMs leaving a host entering maintenance change its state.
  const off = onEvent(coalesce(loadHosts));
  const timer = setInterval(loadHosts, 5000);
  return () => {
    gone = true;
    off();
    clearInterval(timer);
  };
}

function hostsTable(hosts: Host[], reload: () => Promise<void>): HTMLElement {
  return h(
    "table",
    { id: "maintenance-hosts" },
    h("thead", {}, h("tr", {}, ["Host", "State", "VMs (running)", "CPU busy", "Cannot leave", ""].map((c) => h("th", {}, c)))),
    h(
      "tbody",
      {},
      hosts.map((x) =>
        h(
          "tr",
          { "data-host": x.name },
          h("td", {}, hostLink(x.name)),
          h("td", {}, h("span", { class: `state host-${x.state ?? "ready"}` }, x.state ?? "ready")),
          h("td", {}, `${x.vms ?? 0} (${x.runningVMs ?? 0})`),
          h("td", {}, x.load?.cpuBusy === undefined ? "-" : `${x.load.cpuBusy.toFixed(2)} of ${x.cpus ?? "?"}`),
          h("td", { class: "error" }, (x.stuck ?? []).join("; ")),
          h("td", {}, maintenanceButton(x, reload)),
        ),
      ),
    ),
  );
}
