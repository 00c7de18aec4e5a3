// The events page: the VM changes of GET /v1/events as they come (the
// stream opened at login; the latest 500 are kept), filtered by VM, host
// or kind.
import { h, replace } from "../dom";
import { eventStreamState, onEvent, onStreamState, recentEvents, type EventEntry } from "../events";
import { eventText } from "../model";

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
    h("td", {}, e.kind === "deleted" ? e.ev.vm : h("a", { href: `#/vms/${encodeURIComponent(e.ev.vm)}` }, e.ev.vm)),
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
  const table = h("table", { id: "events-table" }, h("thead", {}, h("tr", {}, ["Time", "Revision", "VM", "Kind", "What"].map((c) => h("th", {}, c)))), body);
  const showState = (s: string) => (status.textContent = `stream ${s}`);
  let held = 0;
  const draw = () => {
    const list = recentEvents().filter((e) => matches(e, filter.value));
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
    off();
    offState();
  };
}
