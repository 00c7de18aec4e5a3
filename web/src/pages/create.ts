// The create-VM form. The API validates (internal/agent/validate.go); its
// error names the field (api.Error.field), shown next to that input.
import { api, ApiError } from "../api";
import { h, replace } from "../dom";
import { inputFor } from "../model";
import type { VMSpec } from "../types";

type Field = HTMLInputElement | HTMLSelectElement;

/** specFrom builds a VM definition from the form's values. */
export function specFrom(v: Record<string, string>): VMSpec {
  const spec: VMSpec = { name: v.name.trim(), kernel: v.kernel.trim() };
  if (v.cpus) spec.cpus = Number(v.cpus);
  if (v.memory) spec.memory = v.memory.trim();
  if (v.initrd) spec.initrd = v.initrd.trim();
  if (v.cmdline) spec.cmdline = v.cmdline;
  if (v.boot) spec.boot = v.boot;
  if (v.restartPolicy) spec.restartPolicy = v.restartPolicy;
  if (v.disk) {
    const d = v.disk.trim();
    const pv = /^([a-z0-9-]+)\/([^/]+)$/.exec(d);
    spec.disks = [pv ? { pool: pv[1], volume: pv[2] } : { path: d }];
  }
  if (v.network) spec.nics = [{ network: v.network }];
  // HA (the cluster restarts the VM elsewhere when its host dies) and the
  // order of those restarts: only when asked for, as the API defaults.
  if (v.ha === "true") spec.ha = true;
  if (v.ha === "true" && v.restartPriority && v.restartPriority !== "medium") spec.restartPriority = v.restartPriority;
  return spec;
}

/** createPage renders the form. */
export function createPage(main: HTMLElement): void {
  const fields = new Map<string, Field>();
  const errors = new Map<string, HTMLElement>();
  const networks = h("select", { id: "f-network", name: "network" }, h("option", { value: "" }, "(none)"));
  api
    .networks()
    .then((l) => l.forEach((n) => networks.append(h("option", { value: n.name }, n.name))))
    .catch(() => {});

  function row(name: string, label: string, input: Field, help = ""): HTMLElement {
    fields.set(name, input);
    const err = h("span", { class: "field-error", id: `err-${name}`, role: "alert" });
    errors.set(name, err);
    return h("div", { class: "row" }, h("label", { for: input.id }, label), input, err, help ? h("small", {}, help) : null);
  }
  const input = (name: string, attrs: Record<string, string | boolean> = {}) => h("input", { id: `f-${name}`, name, ...attrs });
  const select = (name: string, opts: string[]) => h("select", { id: `f-${name}`, name }, opts.map((o) => h("option", { value: o }, o)));

  const start = h("input", { id: "f-start", type: "checkbox", checked: true });
  const ha = h("input", { id: "f-ha", type: "checkbox" });
  const priority = select("restartPriority", ["medium", "high", "low"]);
  const general = h("p", { class: "error", id: "create-error", role: "alert" });
  const submit = h("button", { type: "submit", id: "create-submit" }, "Create");
  const form = h(
    "form",
    { id: "create-form", class: "form", novalidate: true },
    row("name", "Name", input("name", { placeholder: "web-1", autocomplete: "off" }), "lower-case letters, digits and -"),
    row("cpus", "vCPUs", input("cpus", { type: "number", value: "1", min: "1" })),
    row("memory", "Memory", input("memory", { value: "256M" }), "M, G or T suffix"),
    row("kernel", "Kernel", input("kernel", { placeholder: "/var/lib/govisor/images/bzImage" }), "absolute path on the host"),
    row("initrd", "Initrd", input("initrd", { placeholder: "(optional)" })),
    row("cmdline", "Command line", input("cmdline", { value: "console=ttyS0" })),
    row("boot", "Boot", select("boot", ["linux64", "pvh"])),
    row("restartPolicy", "Restart policy", select("restartPolicy", ["on-failure", "never", "always"])),
    row("disk", "Disk", input("disk", { placeholder: "POOL/VOLUME or /path/to/image (optional)" })),
    row("network", "Network", networks),
    h("div", { class: "row" }, h("label", { for: "f-ha" }, "High availability"), ha, h("span", {}), h("small", {}, "restart it on another host when its host dies")),
    row("restartPriority", "HA restart priority", priority),
    h("div", { class: "row" }, h("label", { for: "f-start" }, "Start now"), start),
    h("div", { class: "row" }, h("span", {}), submit),
    general,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const el of errors.values()) el.textContent = "";
    for (const f of fields.values()) f.removeAttribute("aria-invalid");
    general.textContent = "";
    const values: Record<string, string> = {};
    for (const [k, f] of fields) values[k] = f.value;
    values.ha = ha.checked ? "true" : "";
    submit.disabled = true;
    try {
      const vm = await api.createVM(specFrom(values), start.checked);
      location.hash = `#/vms/${encodeURIComponent(vm.spec.name)}`;
    } catch (x) {
      const err = x instanceof ApiError ? x : new ApiError(0, String(x));
      const where = inputFor(err.field);
      if (where && errors.has(where)) {
        errors.get(where)!.textContent = err.message;
        fields.get(where)!.setAttribute("aria-invalid", "true");
        fields.get(where)!.focus();
      } else {
        general.textContent = err.field ? `${err.field}: ${err.message}` : err.message;
      }
    } finally {
      submit.disabled = false;
    }
  });
  replace(main, h("h1", {}, "Create a VM"), form);
  main.setAttribute("data-loaded", "true");
}
