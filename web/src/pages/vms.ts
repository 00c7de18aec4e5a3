// The VM list: filter, sort, and start/stop from the row.
import { api, ApiError } from "../api";
import { coalesce, h, replace } from "../dom";
import { onEvent } from "../events";
import { filterSort, stateOf, type SortKey } from "../model";
import type { VM } from "../types";

const columns: [SortKey, string][] = [
  ["name", "Name"],
  ["state", "State"],
  ["host", "Host"],
  ["cpus", "vCPUs"],
  ["memory", "Memory"],
];

/** vmListPage renders the VM list; query may hold state=STATE. */
export function vmListPage(main: HTMLElement, query: string): () => void {
  const state = new URLSearchParams(query).get("state");
  let vms: VM[] = [];
  let key: SortKey = "name";
  let desc = false;
  const filter = h("input", { id: "filter", type: "search", placeholder: "Filter: name, host, state:running", value: state ? `state:${state}` : "" });
  const status = h("p", { id: "list-status", class: "error", role: "alert" });
  const body = h("tbody", {});
  const head = h("tr", {});
  const table = h("table", { id: "vm-table" }, h("thead", {}, head), body);

  function header(): void {
    replace(
      head,
      columns.map(([k, label]) =>
        h(
          "th",
          { "data-sort": k, class: "sortable", onclick: () => ((desc = key === k ? !desc : false), (key = k), draw()) },
          label,
          key === k ? (desc ? " ▼" : " ▲") : "",
        ),
      ),
      h("th", {}, "Actions"),
    );
  }

  async function act(v: VM, action: string): Promise<void> {
    status.textContent = "";
    try {
      await api.act(v.spec.name, action);
      await load();
    } catch (e) {
      status.textContent = `${action} ${v.spec.name}: ${e instanceof ApiError ? e.message : e}`;
    }
  }

  function row(v: VM): HTMLElement {
    const s = stateOf(v);
    const running = s === "running" || s === "paused" || s === "pending";
    return h(
      "tr",
      { "data-vm": v.spec.name },
      h("td", {}, h("a", { href: `#/vms/${encodeURIComponent(v.spec.name)}` }, v.spec.name)),
      h("td", {}, h("span", { class: `state state-${s}` }, s)),
      h("td", {}, v.status?.host || v.host || ""),
      h("td", {}, v.spec.cpus ?? 1),
      h("td", {}, v.spec.memory ?? "256M"),
      h(
        "td",
        {},
        running
          ? h("button", { "data-action": "stop", onclick: () => act(v, "stop") }, "Stop")
          : h("button", { "data-action": "start", onclick: () => act(v, "start") }, "Start"),
      ),
    );
  }

  function draw(): void {
    header();
    const shown = filterSort(vms, filter.value, key, desc);
    replace(body, shown.length ? shown.map(row) : h("tr", {}, h("td", { colspan: 6, class: "muted" }, vms.length ? "No VM matches the filter." : "No VMs.")));
    main.setAttribute("data-loaded", "true");
  }

  let gone = false;
  async function load(): Promise<void> {
    try {
      const l = await api.vms();
      if (gone) return;
      vms = l;
      draw();
    } catch (e) {
      status.textContent = e instanceof ApiError ? e.message : String(e);
    }
  }
  filter.addEventListener("input", draw);
  replace(main, h("h1", {}, "Virtual machines"), h("div", { class: "toolbar" }, filter, h("a", { class: "button", href: "#/create" }, "Create VM")), status, table);
  header();
  load();
  const off = onEvent(coalesce(load));
  return () => {
    gone = true;
    off();
  };
}
