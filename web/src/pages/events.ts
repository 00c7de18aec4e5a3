// The events page: the VM changes and the cluster's decisions (HA
// restarts, evacuations, balancing, host changes) of GET /v1/events as
// they come (the stream opened at login; the latest 500 are kept), with
// the cluster's earlier decisions (GET /v1/cluster/events), filtered by
// VM, host or kind.
import { api } from "../api";
import { h, replace } from "../dom";
import { eventStreamState, onEvent, onStreamState, recentEvents, type EventEntry } from "../events";
import { eventText } from "../model";
import type { ClusterEvent } from "../types";
import { hostLink } from "./host";

/** key identifies a cluster event in the stream and in the history. */
const key = (c: ClusterEvent) => `${c.time}|${c.kind}|${c.vm ?? ""}|${c.host ?? ""}|${c.reason}`;

/**
 * merged is the session's events with the cluster's earlier ones not among
 * them, newest first.
 */
export function merged(session: EventEntry[], history: ClusterEvent[]): EventEntry[] {
  const seen = new Set(session.filter((e) => e.ev.cluster).map((e) => key(e.ev.cluster!)));
  const old = history.filter((c) => !seen.has(key(c))).map((c) => ({ at: new Date(c.time), kind: "cluster", ev: { type: "cluster", vm: c.vm ?? "", cluster: c } }));
  return [...session, ...old].sort((a, b) => b.at.getTime() - a.at.getTime());
}

/** matches reports whether event e has every word of filter in its VM, kind or text. */
export function matches(e: EventEntry, filter: string): boolean {
  const hay = `${e.ev.vm} ${e.kind} ${eventText(e.kind, e.ev)}`.toLowerCase();
  return filter
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every((w) => hay.includes(w));
}

function row(e: EventEntry): HTMLElement {
  return h(
    "tr",
    { "data-vm": e.ev.vm, "data-kind": e.kind },
    h("td", {}, h("time", { datetime: e.at.toISOString() }, e.at.toLocaleTimeString())),
    h("td", {}, e.ev.revision ?? ""),
    h("td", {}, !e.ev.vm ? (e.ev.cluster?.host ? hostLink(e.ev.cluster.host) : "") : e.kind === "deleted" ? e.ev.vm : h("a", { href: `#/vms/${encodeURIComponent(e.ev.vm)}` }, e.ev.vm)),
    h("td", {}, h("span", { class: `kind kind-${e.kind}` }, e.kind)),
    h("td", {}, eventText(e.kind, e.ev)),
  );
}

/** eventsPage renders the live event list. */
export function eventsPage(main: HTMLElement): () => void {
  const filter = h("input", { id: "events-filter", type: "search", placeholder: "Filter: VM, state, kind" });
  const paused = h("input", { id: "events-pause", type: "checkbox" });
  const status = h("span", { id: "events-stream", class: "muted" });
  const count = h("span", { id: "events-count", class: "muted" });
  const body = h("tbody", {});
  const table = h("table", { id: "events-table" }, h("thead", {}, h("tr", {}, ["Time", "Revision", "VM or host", "Kind", "What"].map((c) => h("th", {}, c)))), body);
  const showState = (s: string) => (status.textContent = `stream ${s}`);
  let held = 0;
  let history: ClusterEvent[] = [];
  const draw = () => {
    const list = merged(recentEvents(), history).filter((e) => matches(e, filter.value));
    replace(body, list.length ? list.map(row) : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No events since you logged in.")));
    count.textContent = `${list.length} shown`;
    held = 0;
  };
  filter.addEventListener("input", draw);
  paused.addEventListener("change", () => !paused.checked && draw());
  replace(
    main,
    h("h1", {}, "Events"),
    h("div", { class: "toolbar" }, filter, h("label", {}, paused, " Pause"), count, status),
    table,
  );
  showState(eventStreamState());
  draw();
  main.setAttribute("data-loaded", "true");
  let gone = false;
  api
    .clusterEvents(100)
    .then((l) => {
      history = l;
      if (!gone && !paused.checked) draw();
    })
    .catch(() => {}); // an agent without cluster events: the stream alone
  const offState = onStreamState(showState);
  const off = onEvent((e) => {
    if (paused.checked) {
      count.textContent = `${++held} new while paused`;
      return;
    }
    if (!matches(e, filter.value)) return;
    if (body.querySelector("td[colspan]")) replace(body);
    body.prepend(row(e));
    // as many rows as the session keeps
    while (body.children.length > 500) body.lastElementChild!.remove();
    count.textContent = `${body.children.length} shown`;
  });
  return () => {
    gone = true;
    off();
    offState();
  };
}
