// The networks and storage pools pages: each lists what the API has, with
// a form that defines one (the API's errors next to their fields) and a
// delete button per row (a second click confirms).
import { api, ApiError } from "../api";
import { h, replace } from "../dom";
import { errorText, Form, select } from "../forms";
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

/** deleteButton deletes what it names on a second click, then calls done. */
function deleteButton(what: string, del: () => Promise<void>, error: HTMLElement, done: () => Promise<void>): HTMLButtonElement {
  const b = h("button", { "data-delete": what }, "Delete");
  b.addEventListener("click", async () => {
    if (b.dataset.confirm !== "yes") {
      b.dataset.confirm = "yes";
      b.textContent = `Really delete ${what}?`;
      return;
    }
    error.textContent = "";
    try {
      await del();
      await done();
    } catch (e) {
      error.textContent = `Delete ${what}: ${errorText(e)}`;
    }
  });
  return b;
}

/**
 * listPage renders title, the list load gives (drawn by render, which gets
 * a reload function and the page's error line) and form below it.
 */
function listPage<T>(main: HTMLElement, title: string, load: () => Promise<T[]>, render: (l: T[], reload: () => Promise<void>, error: HTMLElement) => HTMLElement, form: (reload: () => Promise<void>) => Form): void {
  const box = h("div", {}, h("p", {}, "Loading…"));
  const error = h("p", { class: "error", id: "list-error", role: "alert" });
  const reload = async () => {
    try {
      replace(box, render(await load(), reload, error));
      main.setAttribute("data-loaded", "true");
    } catch (e) {
      replace(box, h("p", { class: "error" }, e instanceof ApiError ? e.message : String(e)));
      main.setAttribute("data-loaded", "true");
    }
  };
  replace(main, h("h1", {}, title), error, box, h("h2", {}, "Define one"), form(reload).el);
  reload();
}

/** networksPage lists the networks and defines new ones. */
export function networksPage(main: HTMLElement): void {
  listPage(
    main,
    "Networks",
    api.networks,
    (l, reload, error) =>
      table(
        "networks",
        ["Name", "Kind", "Bridge", "Address", "Used by", ""],
        l.map((n) => [n.name, n.kind ?? "bridge", n.bridge ?? "", n.cidr ?? "", (n.usedBy ?? []).join(", "), deleteButton(n.name, () => api.deleteNetwork(n.name), error, reload)]),
        "No networks yet.",
      ),
    (reload) => {
      const f = new Form("network-form", async (v) => {
        await api.createNetwork({ name: v.name.trim(), bridge: v.bridge.trim() || undefined, cidr: v.cidr.trim() || undefined });
        f.el.reset();
        await reload();
      });
      f.row("name", "Name", h("input", { placeholder: "lan", autocomplete: "off" }), "a DNS label");
      f.row("bridge", "Bridge device", h("input", { placeholder: "(default: gv-NAME)" }), "made on every host");
      f.row("cidr", "Host address", h("input", { placeholder: "169.254.0.1/16 (optional)" }), "the hosts' address on the bridge, with its prefix length");
      return f.finish("Define network");
    },
  );
}

/** poolsPage lists the storage pools and defines new ones. */
export function poolsPage(main: HTMLElement): void {
  listPage(
    main,
    "Storage pools",
    api.pools,
    (l, reload, error) =>
      table(
        "pools",
        ["Name", "Kind", "Path", "Host", "Capacity", "Free", ""],
        l.map((p) => [
          h("a", { href: `#/pools/${encodeURIComponent(p.name)}` }, p.name),
          p.kind ?? "dir",
          p.path,
          p.shared ? "(all hosts)" : p.host ?? "",
          bytes(p.capacityBytes),
          bytes(p.freeBytes),
          deleteButton(p.name, () => api.deletePool(p.name), error, reload),
        ]),
        "No pools yet.",
      ),
    (reload) => {
      const f = new Form("pool-form", async (v) => {
        await api.createPool({ name: v.name.trim(), kind: v.kind, path: v.path.trim() });
        f.el.reset();
        await reload();
      });
      f.row("name", "Name", h("input", { placeholder: "images", autocomplete: "off" }), "a DNS label");
      f.row("kind", "Kind", select([["dir", "dir: a directory on this host"], ["shared", "shared: mounted at the same path on every host"]]));
      f.row("path", "Path", h("input", { placeholder: "/var/lib/govisor/pools/images" }), "absolute; a dir pool's directory is made if missing");
      return f.finish("Define pool");
    },
  );
}
