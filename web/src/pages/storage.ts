// A storage pool's page: its volumes (delete), and a form that creates an
// empty volume, imports an image file of the host or copies a volume,
// converting it to the chosen format (POST /v1/pools/{name}/volumes,
// api/openapi.yaml), with a progress bar that follows the volume's
// progress as the agent lists it while converting.
import { api } from "../api";
import { h, replace } from "../dom";
import { errorText, Form, select } from "../forms";
import { bytes, volumeCreateFrom, volumeFraction } from "../model";
import type { Pool, Volume } from "../types";

const formats = ["qcow2", "raw", "vmdk", "vhd", "vhdx", "vdi"];

/** poolPage renders pool name's page. */
export function poolPage(main: HTMLElement, name: string): () => void {
  const error = h("p", { id: "pool-error", class: "error", role: "alert" });
  const info = h("p", { id: "pool-info" });
  const volsBox = h("div", { id: "volumes-box" }, h("p", {}, "Loading…"));
  const progress = h("div", { id: "volume-progress", hidden: true });
  let gone = false;

  const mode = select([["empty", "empty, of a size"], ["from", "import an image file of the host"], ["fromVolume", "copy a volume of this pool"]]);
  const fromVolume = select([]);
  const form = new Form("volume-form", async (v) => {
    const req = volumeCreateFrom(v);
    const t0 = Date.now();
    const verb = req.from || req.fromVolume ? "converting" : "creating";
    // The agent answers when the volume is complete; meanwhile it lists an
    // import or copy with its progress, which the bar follows.
    const bar = h("progress", { id: "volume-bar", max: 1 });
    const what = h("span", {}, ` ${verb} ${req.name}…`);
    replace(progress, bar, what);
    progress.hidden = false;
    progress.dataset.state = "running";
    const seen: number[] = [];
    let finished = false;
    const poll = async () => {
      while (!finished && !gone) {
        await new Promise((r) => setTimeout(r, 200));
        if (finished) return;
        const v = await api.volume(name, req.name).catch(() => null);
        const f = volumeFraction(v?.progress);
        const secs = ((Date.now() - t0) / 1000).toFixed(0);
        if (finished) return;
        if (f === undefined) {
          what.textContent = ` ${verb} ${req.name}… ${secs} s`;
          continue;
        }
        bar.value = f;
        seen.push(f);
        progress.dataset.seen = seen.map((x) => x.toFixed(2)).join(" ");
        what.textContent = ` ${verb} ${req.name}: ${(f * 100).toFixed(0)}% (${bytes(v!.progress!.doneBytes ?? 0)} of ${bytes(v!.progress!.totalBytes ?? 0)}), ${secs} s`;
      }
    };
    poll();
    try {
      const vol = await api.createVolume(name, req);
      finished = true;
      bar.value = 1;
      what.textContent = ` ${vol.name}: ${vol.format}, ${bytes(vol.virtualSize)} (${bytes(vol.actualSize)} on disk) in ${((Date.now() - t0) / 1000).toFixed(1)} s`;
      progress.dataset.state = "done";
      form.el.reset();
      await load();
    } catch (e) {
      finished = true;
      progress.hidden = true;
      progress.dataset.state = "failed";
      throw e;
    }
  });
  form.row("name", "Name", h("input", { placeholder: "disk1.qcow2", autocomplete: "off" }));
  form.row("format", "Format", select(formats));
  form.row("mode", "Contents", mode);
  const sizeRow = form.row("size", "Size", h("input", { placeholder: "10G" }), "M, G or T suffix");
  const fromRow = form.row("from", "Image file", h("input", { placeholder: "/var/lib/images/debian.qcow2" }), "absolute path on the host; raw, qcow2, vmdk, vhd, vhdx or vdi");
  const volRow = form.row("fromVolume", "Volume", fromVolume);
  form.finish("Create volume");
  const showMode = () => {
    sizeRow.hidden = mode.value !== "empty";
    fromRow.hidden = mode.value !== "from";
    volRow.hidden = mode.value !== "fromVolume";
  };
  mode.addEventListener("change", showMode);
  form.el.addEventListener("reset", () => setTimeout(showMode));
  showMode();

  async function remove(v: Volume, b: HTMLButtonElement): Promise<void> {
    if (b.dataset.confirm !== "yes") {
      b.dataset.confirm = "yes";
      b.textContent = `Really delete ${v.name}?`;
      return;
    }
    error.textContent = "";
    try {
      await api.deleteVolume(name, v.name);
      await load();
    } catch (e) {
      error.textContent = `Delete ${v.name}: ${errorText(e)}`;
    }
  }

  function volumes(l: Volume[]): HTMLElement {
    if (!l.length) return h("p", { id: "volumes", class: "muted" }, "No volumes.");
    return h(
      "table",
      { id: "volumes" },
      h("thead", {}, h("tr", {}, ["Name", "Format", "Size", "On disk", "Used by", ""].map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        l.map((v) => {
          const b = h("button", { "data-delete": v.name }, "Delete");
          b.addEventListener("click", () => remove(v, b));
          return h(
            "tr",
            { "data-volume": v.name },
            h("td", {}, v.name),
            h("td", {}, v.format ?? ""),
            h("td", {}, bytes(v.virtualSize)),
            h("td", {}, bytes(v.actualSize)),
            h("td", {}, (v.usedBy ?? []).map((u, i) => [i ? ", " : "", h("a", { href: `#/vms/${encodeURIComponent(u)}` }, u)])),
            h("td", {}, b),
          );
        }),
      ),
    );
  }

  async function load(): Promise<void> {
    try {
      const [pools, vols] = await Promise.all([api.pools(), api.volumes(name)]);
      if (gone) return;
      const p: Pool | undefined = pools.find((x) => x.name === name);
      if (p) info.textContent = `${p.shared ? "Shared pool (every host)" : `Directory pool on ${p.host ?? "?"}`} at ${p.path}: ${bytes(p.freeBytes)} free of ${bytes(p.capacityBytes)}.`;
      replace(volsBox, volumes(vols));
      const keep = fromVolume.value;
      replace(fromVolume, vols.map((v) => h("option", { value: v.name }, v.name)));
      fromVolume.value = keep;
      main.setAttribute("data-loaded", "true");
    } catch (e) {
      if (!gone) {
        error.textContent = errorText(e);
        main.setAttribute("data-loaded", "true");
      }
    }
  }
  replace(main, h("h1", {}, "Storage pool ", name), info, error, h("h2", {}, "Volumes"), volsBox, h("h2", {}, "New volume"), form.el, progress);
  load();
  return () => {
    gone = true;
  };
}
