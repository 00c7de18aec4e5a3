// The VM list: filter, sort, start/stop from the row, and bulk actions on
// the VMs ticked (at most 8 requests at a time, with a progress bar).
import { api, ApiError } from "../api";
import { coalesce, h, replace } from "../dom";
import { onEvent } from "../events";
import { filterSort, runAll, stateOf, type SortKey } from "../model";
import type { VM } from "../types";

// firstRows are drawn at once; more follow in chunks.
const firstRows = 100;

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
  // The ticked VMs, by name: kept across redraws and reloads.
  const picked = new Set<string>();
  let shown: VM[] = [];
  const all = h("input", { type: "checkbox", id: "select-all", title: "all VMs shown" });
  const pickedCount = h("span", { id: "bulk-count" });
  const bulkBar = h("progress", { id: "bulk-progress", max: 1, value: 0, hidden: true });
  const bulkStatus = h("span", { id: "bulk-status" });
  const bulkButtons = (["start", "stop", "force-stop", "delete"] as const).map((a) =>
    h("button", { "data-bulk": a, onclick: (e: Event) => bulk(a, e.currentTarget as HTMLButtonElement) }, { start: "Start", stop: "Stop", "force-stop": "Force stop", delete: "Delete" }[a]),
  );
  const bulkBox = h("div", { id: "bulk", class: "toolbar bulk" }, pickedCount, bulkButtons, bulkBar, bulkStatus);
  all.addEventListener("change", () => {
    for (const v of shown) all.checked ? picked.add(v.spec.name) : picked.delete(v.spec.name);
    for (const c of body.querySelectorAll<HTMLInputElement>("input[data-pick]")) c.checked = all.checked;
    for (const r of body.querySelectorAll("tr[data-vm]")) r.classList.toggle("selected", all.checked);
    showPicked();
  });
  // One listener for every row's box: 1,000 rows, one closure.
  body.addEventListener("change", (e) => {
    const c = e.target as HTMLInputElement;
    const n = c.dataset.pick;
    if (!n) return;
    c.checked ? picked.add(n) : picked.delete(n);
    c.closest("tr")?.classList.toggle("selected", c.checked);
    showPicked();
  });
  // showPicked shows the selection; a changed one asks again before a delete.
  function showPicked(changed = true): void {
    pickedCount.textContent = picked.size ? `${picked.size} selected:` : "Tick VMs for bulk actions.";
    for (const b of bulkButtons) {
      b.disabled = picked.size === 0 || bulkBox.dataset.state === "running";
      if (changed && b.dataset.bulk === "delete" && b.dataset.confirm) {
        delete b.dataset.confirm;
        b.textContent = "Delete";
      }
    }
  }

  async function bulk(action: "start" | "stop" | "force-stop" | "delete", b: HTMLButtonElement): Promise<void> {
    const names = [...picked].sort();
    if (!names.length) return;
    if (action === "delete" && b.dataset.confirm !== "yes") {
      b.dataset.confirm = "yes";
      b.textContent = `Really delete ${names.length} VMs?`;
      return;
    }
    status.textContent = "";
    bulkButtons.forEach((x) => (x.disabled = true));
    bulkBar.hidden = false;
    bulkBar.value = 0;
    bulkBox.dataset.state = "running";
    const errs = await runAll(names, 8, (n) => (action === "delete" ? api.deleteVM(n) : api.act(n, action)), (n) => {
      bulkBar.value = n / names.length;
      bulkStatus.textContent = ` ${action}: ${n} of ${names.length}`;
    });
    bulkStatus.textContent = ` ${action}: ${names.length - errs.size} of ${names.length} done${errs.size ? `, ${errs.size} failed` : ""}`;
    if (errs.size) status.textContent = [...errs].slice(0, 5).map(([n, e]) => `${action} ${n}: ${e instanceof ApiError ? e.message : e}`).join("; ") + (errs.size > 5 ? `; and ${errs.size - 5} more` : "");
    if (action === "delete") for (const n of names) if (!errs.has(n)) picked.delete(n);
    bulkBox.dataset.state = "done";
    showPicked();
    await load();
  }

  function header(): void {
    replace(
      head,
      h("th", {}, all),
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
    const on = picked.has(v.spec.name);
    return h(
      "tr",
      { "data-vm": v.spec.name, class: on ? "selected" : null },
      h("td", {}, h("input", { type: "checkbox", "data-pick": v.spec.name, checked: on, "aria-label": `select ${v.spec.name}` })),
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
    // VMs deleted elsewhere leave the selection.
    const names = new Set(vms.map((v) => v.spec.name));
    const before = picked.size;
    for (const n of picked) if (!names.has(n)) picked.delete(n);
    showPicked(picked.size !== before);
    shown = filterSort(vms, filter.value, key, desc);
    all.checked = shown.length > 0 && shown.every((v) => picked.has(v.spec.name));
    if (!shown.length) {
      replace(body, h("tr", {}, h("td", { colspan: 7, class: "muted" }, vms.length ? "No VM matches the filter." : "No VMs.")));
    } else {
      // The first screenful at once, the rest in later tasks: with 1,000
      // VMs the browser paints the top of the list without waiting for
      // every row.
      const gen = ++drawing;
      replace(body, shown.slice(0, firstRows).map(row));
      const more = (from: number) => {
        if (gen !== drawing || gone || from >= shown.length) return;
        const f = document.createDocumentFragment();
        for (const v of shown.slice(from, from + 250)) f.append(row(v));
        body.append(f);
        setTimeout(() => more(from + 250));
      };
      setTimeout(() => more(firstRows));
    }
    main.setAttribute("data-loaded", "true");
  }
  // drawing counts draws: rows still to add from an older one are dropped.
  let drawing = 0;

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
  replace(main, h("h1", {}, "Virtual machines"), h("div", { class: "toolbar" }, filter, h("a", { class: "button", href: "#/create" }, "Create VM")), bulkBox, status, table);
  header();
  load();
  const off = onEvent(coalesce(load));
  return () => {
    gone = true;
    off();
  };
}
