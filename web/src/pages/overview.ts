// The cluster overview: hosts with capacity and load, VMs by state, and
// the latest events.
import { api, ApiError } from "../api";
import { coalesce, h, replace } from "../dom";
import { onEvent, recentEvents, type EventEntry } from "../events";
import { alarms, countStates, eventText, rates, type Alarm } from "../model";
import { hostLink } from "./host";
import type { Host, VM } from "../types";

function pct(n: number, of: number): string {
  return of > 0 ? `${Math.round((n / of) * 100)}%` : "-";
}

function bar(frac: number): HTMLElement {
  const f = Math.max(0, Math.min(1, frac));
  return h("span", { class: "bar" }, h("span", { class: f > 0.9 ? "fill hot" : "fill", style: `width:${(f * 100).toFixed(0)}%` }));
}

function hostsTable(hosts: Host[], load: Map<string, number>): HTMLElement {
  return h(
    "table",
    { id: "hosts" },
    h("thead", {}, h("tr", {}, ["Host", "State", "CPUs", "CPU load", "Memory", "Allocated", "VMs (running)", "Version"].map((c) => h("th", {}, c)))),
    h(
      "tbody",
      {},
      hosts.map((x) => {
        // The host list's measured load (CPUs busy), else this agent's samples.
        const l = x.load?.cpuBusy !== undefined ? x.load.cpuBusy * 100 : load.get(x.name);
        const alloc = x.allocatedMiB ?? 0;
        const mem = x.memoryMiB ?? 0;
        return h(
          "tr",
          { "data-host": x.name },
          h("td", {}, hostLink(x.name), x.leader ? h("span", { class: "muted", title: "runs the cluster's controllers" }, " (leader)") : null),
          h(
            "td",
            {},
            h("span", { class: `state host-${x.state ?? "ready"}` }, x.state ?? "ready"),
            x.stuck?.length ? h("div", { class: "error" }, x.stuck.join("; ")) : null,
          ),
          h("td", {}, x.cpus ?? "-"),
          // l is in percent of one CPU; the bar and figure are of all of them
          h("td", {}, l === undefined ? "-" : [bar(l / 100 / (x.cpus || 1)), ` ${(l / (x.cpus || 1)).toFixed(0)}%`]),
          h("td", {}, `${(mem / 1024).toFixed(1)} GiB`),
          h("td", {}, bar(mem ? alloc / mem : 0), ` ${alloc} MiB (${pct(alloc, mem)})`),
          h("td", {}, `${x.vms ?? 0} (${x.runningVMs ?? 0})`),
          h("td", {}, x.version ?? ""),
        );
      }),
    ),
  );
}

function eventRow(e: EventEntry): HTMLElement {
  const host = e.ev.cluster?.host;
  return h(
    "li",
    { "data-kind": e.kind },
    h("time", {}, e.at.toLocaleTimeString()),
    " ",
    e.ev.vm ? h("a", { href: `#/vms/${encodeURIComponent(e.ev.vm)}` }, e.ev.vm) : host ? hostLink(host) : null,
    " ",
    eventText(e.kind, e.ev),
  );
}

/** overviewPage renders the overview and refreshes it every 10 s. */
export function overviewPage(main: HTMLElement): () => void {
  const hostsBox = h("section", { id: "hosts-box" }, h("p", {}, "Loading hosts…"));
  const statesBox = h("section", { id: "states-box" });
  const alarmsBox = h("section", { id: "alarms-box" });
  const events = h("ul", { id: "events", class: "events" });
  const fillEvents = () => {
    const list = recentEvents();
    replace(events, list.length ? list.slice(0, 20).map(eventRow) : h("li", { class: "muted" }, "No events since you logged in."));
  };
  replace(
    main,
    h("h1", {}, "Cluster overview"),
    alarmsBox,
    h("h2", {}, "Hosts"),
    hostsBox,
    h("h2", {}, "VMs by state"),
    statesBox,
    h("h2", {}, "Recent events"),
    events,
  );
  fillEvents();
  const reload = coalesce(() => load());
  const off = onEvent(() => {
    fillEvents();
    reload();
  });
  let gone = false;
  async function load(): Promise<void> {
    try {
      const [hosts, vms, usage] = await Promise.all([
        api.hosts(),
        api.vms(),
        api.usage({ from: new Date(Date.now() - 120_000) }).catch(() => null),
      ]);
      if (gone) return;
      const l = new Map<string, number>();
      if (usage?.host) {
        const s = rates(usage.samples ?? [], "");
        if (s.cpu.length) l.set(usage.host, s.cpu[s.cpu.length - 1]);
      }
      replace(hostsBox, hosts.length ? hostsTable(hosts, l) : h("p", {}, "No hosts."));
      replace(statesBox, statesList(vms));
      replace(alarmsBox, alarmList(alarms(hosts, vms)));
      main.setAttribute("data-loaded", "true");
    } catch (e) {
      if (!gone) replace(hostsBox, h("p", { class: "error" }, e instanceof ApiError ? e.message : String(e)));
    }
  }
  load();
  const timer = setInterval(load, 10_000);
  return () => {
    gone = true;
    off();
    clearInterval(timer);
  };
}

function statesList(vms: VM[]): HTMLElement {
  const c = countStates(vms);
  if (!vms.length) return h("p", { id: "states" }, "No VMs yet. ", h("a", { href: "#/create" }, "Create one."));
  return h(
    "ul",
    { id: "states", class: "states" },
    [...c.entries()].sort().map(([s, n]) =>
      h("li", { class: `state-${s}` }, h("a", { href: `#/vms?state=${s}`, "data-state": s }, h("b", {}, String(n)), ` ${s}`)),
    ),
  );
}

function alarmList(list: Alarm[]): HTMLElement {
  if (!list.length) return h("p", { id: "alarms", class: "ok", "data-count": 0 }, "No alarms.");
  const shown = list.slice(0, 20);
  return h(
    "div",
    {},
    h("h2", {}, `Alarms (${list.length})`),
    h(
      "ul",
      { id: "alarms", class: "alarms", "data-count": list.length },
      shown.map((a) => h("li", { class: `alarm alarm-${a.level}` }, h("a", { href: a.href }, a.text))),
      list.length > shown.length ? h("li", { class: "muted" }, `and ${list.length - shown.length} more`) : null,
    ),
  );
}
