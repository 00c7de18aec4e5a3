// The networks and storage pools pages.
import { api, ApiError } from "../api";
import { h, replace } from "../dom";
import { bytes } from "../model";

function table(id: string, cols: string[], rows: (string | number | Node)[][], empty: string): HTMLElement {
  if (!rows.length) return h("p", { id, class: "muted" }, empty);
  return h(
    "table",
    { id },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-name": r[0] instanceof Node ? r[0].textContent ?? "" : String(r[0]) }, r.map((c) => h("td", {}, c instanceof Node ? c : String(c)))))),
  );
}

async function listPage<T>(main: HTMLElement, title: string, load: () => Promise<T[]>, render: (l: T[]) => HTMLElement): Promise<void> {
  const box = h("div", {}, h("p", {}, "Loading…"));
  replace(main, h("h1", {}, title), box);
  try {
    replace(box, render(await load()));
    main.setAttribute("data-loaded", "true");
  } catch (e) {
    replace(box, h("p", { class: "error" }, e instanceof ApiError ? e.message : String(e)));
  }
}

/** networksPage lists the networks. */
export function networksPage(main: HTMLElement): void {
  listPage(main, "Networks", api.networks, (l) =>
    table(
      "networks",
      ["Name", "Kind", "Bridge", "Address", "Used by"],
      l.map((n) => [n.name, n.kind ?? "bridge", n.bridge ?? "", n.cidr ?? "", (n.usedBy ?? []).join(", ")]),
      "No networks. Define one with govisor net create NAME.",
    ),
  );
}

/** poolsPage lists the storage pools. */
export function poolsPage(main: HTMLElement): void {
  listPage(main, "Storage pools", api.pools, (l) =>
    table(
      "pools",
      ["Name", "Kind", "Path", "Host", "Capacity", "Free"],
      l.map((p) => [h("a", { href: `#/pools/${encodeURIComponent(p.name)}` }, p.name), p.kind ?? "dir", p.path, p.shared ? "(all hosts)" : p.host ?? "", bytes(p.capacityBytes), bytes(p.freeBytes)]),
      "No pools. Define one with govisor pool create NAME --path DIR.",
    ),
  );
}
