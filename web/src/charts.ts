// Charts with uPlot, from the agent's usage samples.
import type uPlot from "uplot";
import type { Series } from "./model";

/** Chart is a live chart; set replaces its data. */
export interface Chart {
  set(s: Series): void;
  close(): void;
}

type Field = "cpu" | "memMiB" | "diskRead" | "diskWrite" | "netRx" | "netTx";

const colors: Record<Field, string> = { cpu: "#2a6fdb", memMiB: "#2a9d5c", diskRead: "#2a6fdb", diskWrite: "#d9822b", netRx: "#2a9d5c", netTx: "#8e44ad" };

/**
 * chart draws fields of s in el, each a line labelled by labels (one field:
 * filled); el's data-last is the first field's latest value.
 */
export async function chart(el: HTMLElement, title: string, fields: Field[], labels: string[], unit: string): Promise<Chart> {
  const [{ default: UPlot }] = await Promise.all([import("uplot"), import("uplot/dist/uPlot.min.css")]);
  const floor = fields[0] === "cpu" ? 100 : fields[0] === "memMiB" ? 64 : 1;
  const opts: uPlot.Options = {
    title,
    width: Math.max(300, Math.min(560, el.clientWidth || 560)),
    height: 200,
    series: [{}, ...fields.map((f, i) => ({ label: labels[i], stroke: colors[f], width: 2, fill: fields.length === 1 ? `${colors[f]}22` : undefined }))],
    axes: [{}, { label: unit }],
    // One sample alone would stretch the time axis over years: give it a
    // minute each side.
    scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - 60, max + 60] : [min, max]) }, y: { range: (_u, _min, max) => [0, Math.max(floor, max * 1.1)] } },
  };
  const plot = new UPlot(opts, [[], ...fields.map(() => [])], el);
  return {
    set(s) {
      plot.setData([s.t, ...fields.map((f) => s[f])]);
      el.dataset.points = String(s.t.length);
      const first = s[fields[0]];
      el.dataset.last = s.t.length ? String(first[s.t.length - 1] ?? "") : "";
    },
    close() {
      plot.destroy();
    },
  };
}

/** Line is one named series of a multi-line chart. */
export interface Line {
  label: string;
  values: (number | null)[];
}

const palette = ["#2a6fdb", "#2a9d5c", "#d9822b", "#c0392b", "#8e44ad", "#16a085", "#7f8c8d", "#b7950b"];

/** lines draws several series over shared times (Unix seconds) in el, once. */
export async function lines(el: HTMLElement, title: string, unit: string, t: number[], ls: Line[]): Promise<() => void> {
  const [{ default: UPlot }] = await Promise.all([import("uplot"), import("uplot/dist/uPlot.min.css")]);
  const plot = new UPlot(
    {
      title,
      width: Math.max(300, Math.min(1100, el.clientWidth || 560)),
      height: 240,
      series: [{}, ...ls.map((l, i) => ({ label: l.label, stroke: palette[i % palette.length], width: 1.5 }))],
      axes: [{}, { label: unit }],
      scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - 60, max + 60] : [min, max]) }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
    },
    [t, ...ls.map((l) => l.values)],
    el,
  );
  el.dataset.points = String(t.length);
  el.dataset.series = String(ls.length);
  return () => plot.destroy();
}
