// A VM's page: its state and definition, lifecycle actions, snapshots, the
// serial console and CPU, memory, disk and network charts.
import { api, ApiError } from "../api";
import { chart, type Chart } from "../charts";
import { openConsole, type Console } from "../console";
import { coalesce, h, replace } from "../dom";
import { onEvent } from "../events";
import { actionsFor, migrationProgress, rates, stateOf } from "../model";
import { Form, select } from "../forms";
import { diskFrom } from "../model";
import type { VM } from "../types";

const labels: Record<string, string> = {
  start: "Start",
  stop: "Stop",
  "force-stop": "Force stop",
  restart: "Restart",
  pause: "Pause",
  resume: "Resume",
  snapshot: "Snapshot",
  reboot: "Reset",
  migrate: "Migrate",
  "cancel-migrate": "Cancel migration",
  delete: "Delete",
};

/** vmPage renders VM name's page. */
export function vmPage(main: HTMLElement, name: string): () => void {
  const title = h("h1", {}, name, " ", h("span", { id: "vm-state", class: "state" }, "…"));
  const status = h("p", { id: "vm-error", class: "error", role: "alert" });
  const actions = h("div", { id: "vm-actions", class: "toolbar" });
  const snapName = h("input", { id: "snapshot-name", placeholder: "snapshot name", size: 16 });
  const migrateTo = h("select", { id: "migrate-to", title: "destination host" });
  const migrateBW = h("input", { id: "migrate-bw", type: "number", min: "1", size: 6, placeholder: "MiB/s", title: "bandwidth cap in MiB/s (empty: unlimited)" });
  const details = h("dl", { id: "vm-details" });
  const disks = h("ul", { id: "disks", class: "disks" });
  const attach = new Form("attach-form", async (v) => {
    try {
      await api.attachDisk(name, diskFrom(v));
    } catch (e) {
      // The API names the disk's path, pool or volume: all are this input.
      if (e instanceof ApiError && e.field && /(^|\.)(path|pool|volume)$|^disks/.test(e.field)) e.field = "disk";
      throw e;
    }
    attach.el.reset();
    await load();
  });
  attach.row("disk", "Disk", h("input", { placeholder: "POOL/VOLUME or /path/to/image", autocomplete: "off" }));
  attach.row("format", "Format", select([["", "(probe)"], "raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi"]));
  attach.row("readOnly", "Read-only", h("input", { type: "checkbox" }));
  attach.finish("Attach disk");
  const snaps = h("ul", { id: "snapshots" });
  const consoleStatus = h("span", { id: "console-status", class: "muted" });
  const consoleBox = h("div", { id: "console", class: "console" });
  const cpuBox = h("div", { id: "chart-cpu", class: "chart" });
  const memBox = h("div", { id: "chart-mem", class: "chart" });
  const diskBox = h("div", { id: "chart-disk", class: "chart" });
  const netBox = h("div", { id: "chart-net", class: "chart" });
  replace(
    main,
    title,
    status,
    actions,
    h("div", { class: "columns" }, h("section", {}, h("h2", {}, "Definition"), details), h("section", {}, h("h2", {}, "Snapshots"), snaps)),
    h("h2", {}, "Disks"),
    disks,
    attach.el,
    h("h2", {}, "Serial console ", consoleStatus),
    consoleBox,
    h("h2", {}, "Usage"),
    h("div", { class: "charts" }, cpuBox, memBox, diskBox, netBox),
  );

  let gone = false;
  let con: Console | null = null;
  let charts: Chart[] = [];
  let vm: VM | null = null;

  async function act(action: string): Promise<void> {
    status.textContent = "";
    try {
      if (action === "delete") {
        const b = actions.querySelector<HTMLButtonElement>('button[data-action="delete"]')!;
        if (b.dataset.confirm !== "yes") {
          // A second click deletes: no dialog box to dismiss.
          b.dataset.confirm = "yes";
          b.textContent = `Really delete ${name}?`;
          return;
        }
        await api.deleteVM(name);
        location.hash = "#/vms";
        return;
      }
      if (action === "migrate") {
        if (!migrateTo.value) throw new Error("no other host to migrate to");
        const bw = Number(migrateBW.value);
        if (migrateBW.value && !(bw > 0)) throw new Error(`bandwidth ${JSON.stringify(migrateBW.value)}: give MiB/s, more than 0`);
        await api.migrate(name, migrateTo.value, bw > 0 ? Math.round(bw * 1048576) : undefined);
        await load();
        return;
      }
      if (action === "cancel-migrate") {
        await api.cancelMigrate(name);
        await load();
        return;
      }
      if (action === "snapshot") {
        const snap = snapName.value.trim() || `snap-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "")}`;
        await api.snapshot(name, snap);
        snapName.value = "";
      } else {
        await api.act(name, action);
      }
      await load();
    } catch (e) {
      status.textContent = `${labels[action] ?? action}: ${e instanceof ApiError ? e.message : e}`;
      if (e instanceof ApiError && e.status === 421) hostConsoleLink();
    }
  }

  async function detach(i: number, b: HTMLButtonElement): Promise<void> {
    status.textContent = "";
    b.disabled = true;
    try {
      await api.detachDisk(name, i);
      await load();
    } catch (e) {
      status.textContent = `Detach disk ${i}: ${e instanceof ApiError ? e.message : e}`;
      if (e instanceof ApiError && e.status === 421) hostConsoleLink();
      b.disabled = false;
    }
  }

  // hostConsoleLink adds to the error line a link to this VM's page on the
  // console of the agent of its host: actions on a VM's process (pause,
  // snapshot, disks...) are its host agent's (421 here).
  function hostConsoleLink(): void {
    const here = vm?.status?.host || vm?.host;
    api
      .hosts()
      .then((hosts) => {
        const tcp = hosts.find((x) => x.name === here)?.api?.find((a) => a.startsWith("tcp:"));
        if (!tcp) return;
        const url = `https://${tcp.slice(4)}/ui/#/vms/${encodeURIComponent(name)}`;
        status.append(" ", h("a", { href: url, id: "vm-host-console" }, `Open ${name} on ${here}'s console`));
      })
      .catch(() => {});
  }

  async function restore(snap: string): Promise<void> {
    status.textContent = "";
    try {
      await api.restore(name, snap);
      await load();
    } catch (e) {
      status.textContent = `Restore ${snap}: ${e instanceof ApiError ? e.message : e}`;
      if (e instanceof ApiError && e.status === 421) hostConsoleLink();
    }
  }

  function draw(v: VM): void {
    const s = stateOf(v);
    const el = title.querySelector("#vm-state")!;
    el.textContent = s;
    el.className = `state state-${s}`;
    replace(
      actions,
      actionsFor(v).map((a) => [
        a === "snapshot" ? snapName : a === "migrate" ? [migrateTo, migrateBW] : null,
        h("button", { "data-action": a, onclick: () => act(a) }, labels[a] ?? a),
      ]),
    );
    const sp = v.spec;
    const row = (k: string, val: string | number | undefined) => (val === undefined || val === "" ? null : [h("dt", {}, k), h("dd", { "data-key": k }, String(val))]);
    replace(
      details,
      row("Desired", v.desired),
      row("Host", v.status?.host || v.host),
      row("Since", v.status?.since ? new Date(v.status.since).toLocaleString() : undefined),
      row("vCPUs", sp.cpus ?? 1),
      row("Memory", sp.memory ?? "256M"),
      row("Kernel", sp.kernel),
      row("Initrd", sp.initrd),
      row("Command line", sp.cmdline),
      row("Disks", (sp.disks ?? []).map((d) => d.path || `${d.pool}/${d.volume}`).join(", ")),
      row("Networks", (sp.nics ?? []).map((n) => `${n.network} (${n.mac ?? ""})`).join(", ")),
      row("HA", sp.ha ? `yes, ${sp.restartPriority || "medium"} restart priority` : undefined),
      row("Exit", v.status?.exitReason),
      row("Restarts", v.status?.restarts),
    );
    const ds = sp.disks ?? [];
    replace(
      disks,
      ds.length
        ? ds.map((d, i) => {
            const b = h("button", { "data-detach": i }, "Detach");
            b.addEventListener("click", () => detach(i, b));
            return h(
              "li",
              { "data-disk": i },
              h("code", {}, `#${i}`),
              " ",
              d.pool ? `${d.pool}/${d.volume}` : d.path ?? "",
              d.readOnly ? " (read-only)" : "",
              d.format ? ` ${d.format}` : "",
              " ",
              b,
            );
          })
        : h("li", { class: "muted" }, "No disks."),
    );
    const here = v.status?.host || v.host;
    api
      .hosts()
      .then((hosts) => {
        const others = hosts.filter((x) => x.name !== here && (x.state ?? "ready") === "ready").map((x) => x.name);
        if (others.join() !== [...migrateTo.options].map((o) => o.value).join()) {
          replace(migrateTo, others.map((n) => h("option", { value: n }, n)));
        }
      })
      .catch(() => {});
    const m = v.status?.migration;
    const p = migrationProgress(m);
    if (m && p !== undefined) {
      details.append(
        h("dt", {}, "Migration"),
        h(
          "dd",
          { id: "migration" },
          `${m.state} to ${m.to ?? "?"}, round ${m.round ?? 0} `,
          h("progress", { max: 1, value: p.toFixed(3) }),
          m.error ? h("span", { class: "error" }, ` ${m.error}`) : null,
        ),
      );
    }
    const live = s === "running" || s === "paused";
    if (live && !con) {
      consoleBox.hidden = false;
      openConsole(consoleBox, name, (st) => (consoleStatus.textContent = st)).then((c) => {
        if (gone) c.close();
        else con = c;
      });
    } else if (!live && con) {
      con.close();
      con = null;
      consoleBox.replaceChildren();
    }
    if (!live && !con) {
      consoleStatus.textContent = "(the VM is not running)";
      consoleBox.hidden = true;
    }
  }

  async function load(): Promise<void> {
    try {
      const [v, list] = await Promise.all([api.vm(name), api.snapshots(name).catch(() => [])]);
      if (gone) return;
      vm = v;
      draw(v);
      replace(
        snaps,
        list.length
          ? list.map((x) =>
              h(
                "li",
                { "data-snapshot": x.name },
                x.name,
                " ",
                h("span", { class: "muted" }, x.created ? new Date(x.created).toLocaleString() : ""),
                " ",
                h("button", { "data-restore": x.name, onclick: () => restore(x.name) }, "Restore"),
              ),
            )
          : h("li", { class: "muted" }, "None."),
      );
      main.setAttribute("data-loaded", "true");
    } catch (e) {
      status.textContent = e instanceof ApiError ? e.message : String(e);
    }
  }

  async function loadUsage(): Promise<void> {
    try {
      const u = await api.usage({ vm: name, from: new Date(Date.now() - 30 * 60_000) });
      if (gone) return;
      const s = rates(u.samples ?? [], name);
      for (const c of charts) c.set(s);
    } catch {
      // charts keep their last data; the page's error line is for actions
    }
  }

  Promise.all([
    chart(cpuBox, "CPU", ["cpu"], ["% of a CPU"], "% of a CPU"),
    chart(memBox, "Memory (resident)", ["memMiB"], ["MiB"], "MiB"),
    chart(diskBox, "Disk I/O", ["diskRead", "diskWrite"], ["read KiB/s", "written KiB/s"], "KiB/s"),
    chart(netBox, "Network", ["netRx", "netTx"], ["received KiB/s", "sent KiB/s"], "KiB/s"),
  ]).then((cs) => {
    if (gone) return cs.forEach((c) => c.close());
    charts = cs;
    loadUsage();
  });
  load();
  const reload = coalesce(load);
  const off = onEvent((e) => {
    if (e.ev.vm === name) reload();
  });
  const timer = setInterval(() => {
    loadUsage();
    if (vm && stateOf(vm) !== "stopped") load();
  }, 5_000);
  return () => {
    gone = true;
    off();
    clearInterval(timer);
    con?.close();
    charts.forEach((c) => c.close());
  };
}
