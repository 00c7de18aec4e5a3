// Small forms whose API errors show next to their fields (api.Error.field),
// as the create-VM form does.
import { ApiError } from "./api";
import { h } from "./dom";

type Field = HTMLInputElement | HTMLSelectElement;

/** Form is a form of labelled fields and the API's errors about them. */
export class Form {
  readonly el: HTMLFormElement;
  private fields = new Map<string, Field>();
  private errs = new Map<string, HTMLElement>();
  private general: HTMLElement;

  /** constructor makes form id, which calls submit with its values. */
  constructor(id: string, submit: (values: Record<string, string>) => Promise<void>) {
    this.general = h("p", { class: "error", id: `${id}-error`, role: "alert" });
    this.el = h("form", { id, class: "form", novalidate: true });
    this.el.addEventListener("submit", async (e) => {
      e.preventDefault();
      this.clear();
      const button = this.el.querySelector<HTMLButtonElement>("button[type=submit]");
      if (button) button.disabled = true;
      try {
        await submit(this.values());
      } catch (x) {
        this.show(x);
      } finally {
        if (button) button.disabled = false;
      }
    });
  }

  /** row adds a labelled field; its error goes beside it. */
  row(name: string, label: string, input: Field, help = ""): HTMLElement {
    input.id ||= `${this.el.id}-${name}`;
    input.name = name;
    this.fields.set(name, input);
    const err = h("span", { class: "field-error", id: `${input.id}-err`, role: "alert" });
    this.errs.set(name, err);
    const r = h("div", { class: "row" }, h("label", { for: input.id }, label), input, err, help ? h("small", {}, help) : null);
    this.el.append(r);
    return r;
  }

  /** finish adds the submit button and the line for errors of no field. */
  finish(label: string): this {
    this.el.append(h("div", { class: "row" }, h("span", {}), h("button", { type: "submit", id: `${this.el.id}-submit` }, label)), this.general);
    return this;
  }

  /** values are the fields' values by name. */
  values(): Record<string, string> {
    const v: Record<string, string> = {};
    for (const [k, f] of this.fields) v[k] = f instanceof HTMLInputElement && f.type === "checkbox" ? String(f.checked) : f.value;
    return v;
  }

  /** clear removes the errors shown. */
  clear(): void {
    for (const e of this.errs.values()) e.textContent = "";
    for (const f of this.fields.values()) f.removeAttribute("aria-invalid");
    this.general.textContent = "";
  }

  /** show puts err beside the field it names, else on the form's error line. */
  show(x: unknown): void {
    const err = x instanceof ApiError ? x : new ApiError(0, x instanceof Error ? x.message : String(x));
    const name = err.field?.replace(/^disks\[\d+\]\./, "");
    if (name && this.errs.has(name)) {
      this.errs.get(name)!.textContent = err.message;
      this.fields.get(name)!.setAttribute("aria-invalid", "true");
      this.fields.get(name)!.focus();
    } else {
      this.general.textContent = err.field ? `${err.field}: ${err.message}` : err.message;
    }
  }
}

/** select makes a select of options (value, or [value, label]). */
export function select(opts: (string | [string, string])[], value = ""): HTMLSelectElement {
  const s = h("select", {}, opts.map((o) => (typeof o === "string" ? h("option", { value: o }, o) : h("option", { value: o[0] }, o[1]))));
  if (value) s.value = value;
  return s;
}

/** errorText is what an error says on a page's error line. */
export function errorText(e: unknown): string {
  return e instanceof ApiError || e instanceof Error ? e.message : String(e);
}
