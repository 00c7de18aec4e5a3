// The reports page: the utilization report of `govisor report` in the
// browser (GET /v1/usage over a window): the host's CPU and memory and the
// busiest VMs' CPU as charts, a summary per VM, and the same CSV as
// `govisor report --csv` to download.
import { api } from "../api";
import { lines, type Line } from "../charts";
import { h, replace } from "../dom";
import { errorText, select } from "../forms";
import { bytes } from "../model";
import { rowsOf, split, summarize, toCSV, type Row } from "../report";

/** windows are the report's choices: label, length in ms, sample step. */
const windows: [string, number, string][] = [
  ["1 hour", 3600e3, ""],
  ["6 hours", 6 * 3600e3, "60s"],
  ["24 hours", 24 * 3600e3, "2m"],
  ["7 days", 7 * 24 * 3600e3, "10m"],
];

/** chartLines puts rows of several series on shared times (Unix seconds), a value or null per time. */
export function chartLines(series: { label: string; rows: Row[] }[], value: (r: Row) => number): { t: number[]; lines: Line[] } {
  const ts = new Set<number>();
  for (const s of series) for (const r of s.rows) ts.add(Math.round(r.end / 1000));
  const t = [...ts].sort((a, b) => a - b);
  const at = new Map(t.map((x, i) => [x, i]));
  return {
    t,
    lines: series.map((s) => {
      const values: (number | null)[] = new Array(t.length).fill(null);
      for (const r of s.rows) values[at.get(Math.round(r.end / 1000))!] = Math.round(value(r) * 10) / 10;
      return { label: s.label, values };
    }),
  };
}

/** reportsPage renders the report over the chosen window. */
export function reportsPage(main: HTMLElement): () => void {
  const win = select(windows.map(([l], i) => [String(i), l]), "0");
  win.id = "report-window";
  const error = h("p", { id: "report-error", class: "error", role: "alert" });
  const download = h("a", { id: "report-csv", class: "button", download: "govisor-report.csv", href: "#" }, "Download CSV");
  const summary = h("div", { id: "report-summary" });
  const charts = h("div", { class: "charts" });
  let url = "";
  let closers: (() => void)[] = [];
  let gone = false;

  async function load(): Promise<void> {
    error.textContent = "";
    const [, length, step] = windows[Number(win.value)];
    // Whole seconds, as govisor report asks: the same window thins the
    // samples the same way, so the CSV is the CLI's.
    const to = new Date(Math.floor(Date.now() / 1000) * 1000);
    const from = new Date(to.getTime() - length);
    try {
      const rep = await api.usage({ from, to, step });
      if (gone) return;
      const series = split(rep.samples ?? []);
      const rows = series.map((s) => ({ s, rows: rowsOf(s), sum: summarize(s) }));
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(new Blob([toCSV(rows.flatMap((r) => r.rows))], { type: "text/csv" }));
      download.href = url;
      download.download = `govisor-report-${from.toISOString().slice(0, 16).replace(/[-:]/g, "")}.csv`;
      // What the CSV covers, for a test to ask the API the same.
      Object.assign(download.dataset, { from: from.toISOString(), to: to.toISOString(), step });
      download.dataset.rows = String(rows.reduce((n, r) => n + r.rows.length, 0));
      const hosts = rows.filter((r) => r.s.vm === "");
      const vms = rows.filter((r) => r.s.vm !== "").sort((a, b) => b.sum.avgCPUPercent - a.sum.avgCPUPercent);
      replace(
        summary,
        rows.length
          ? h(
              "table",
              { id: "report-table" },
              h("thead", {}, h("tr", {}, ["VM", "Host", "vCPUs", "CPU avg", "CPU peak", "Memory avg", "Memory peak", "Disk I/O", "Network"].map((c) => h("th", {}, c)))),
              h(
                "tbody",
                {},
                [...hosts, ...vms].map(({ sum }) =>
                  h(
                    "tr",
                    { "data-vm": sum.vm || "(host)", "data-host": sum.host },
                    h("td", {}, sum.vm ? h("a", { href: `#/vms/${encodeURIComponent(sum.vm)}` }, sum.vm) : h("i", {}, "(the host)")),
                    h("td", {}, sum.host),
                    h("td", {}, sum.vcpus),
                    h("td", {}, `${sum.avgCPUPercent.toFixed(1)}%`),
                    h("td", {}, `${sum.peakCPUPercent.toFixed(1)}%`),
                    h("td", {}, bytes(sum.avgMemoryBytes)),
                    h("td", {}, bytes(sum.peakMemoryBytes)),
                    h("td", {}, sum.hasIO ? bytes(sum.diskBytes) : "-"),
                    h("td", {}, sum.hasIO ? bytes(sum.netBytes) : "-"),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted" }, "No samples in this window yet: the agents sample every 10 s."),
      );
      closers.forEach((c) => c());
      closers = [];
      replace(charts);
      const box = (id: string) => {
        const el = h("div", { id, class: "chart" });
        charts.append(el);
        return el;
      };
      const hostCPU = chartLines(hosts.map((r) => ({ label: r.s.host, rows: r.rows })), (r) => r.cpuPercent);
      const hostMem = chartLines(hosts.map((r) => ({ label: r.s.host, rows: r.rows })), (r) => r.memoryBytes / 1048576);
      // The eight busiest VMs: more lines would not be told apart.
      const vmCPU = chartLines(vms.slice(0, 8).map((r) => ({ label: r.s.vm, rows: r.rows })), (r) => r.cpuPercent);
      const cs = [
        ["report-host-cpu", "Hosts: CPU", "% of all CPUs", hostCPU],
        ["report-host-mem", "Hosts: memory in use", "MiB", hostMem],
        ["report-vm-cpu", "Busiest VMs: CPU", "% of their vCPUs", vmCPU],
      ] as const;
      closers = await Promise.all(cs.map(([id, title, unit, d]) => lines(box(id), title, unit, d.t, d.lines)));
      if (gone) closers.forEach((c) => c());
      main.setAttribute("data-loaded", "true");
    } catch (e) {
      if (!gone) {
        error.textContent = errorText(e);
        main.setAttribute("data-loaded", "true");
      }
    }
  }
  win.addEventListener("change", load);
  const refresh = h("button", { id: "report-refresh", onclick: () => load() }, "Refresh");
  replace(main, h("h1", {}, "Utilization report"), h("div", { class: "toolbar" }, h("label", { for: "report-window" }, "Window"), win, refresh, download), error, charts, h("h2", {}, "By VM"), summary);
  load();
  return () => {
    gone = true;
    closers.forEach((c) => c());
    if (url) URL.revokeObjectURL(url);
  };
}
