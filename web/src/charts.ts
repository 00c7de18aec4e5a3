// CPU and memory charts with uPlot, from the agent's usage samples.
import type uPlot from "uplot";
import type { Series } from "./model";

/** Chart is a live chart; set replaces its data. */
export interface Chart {
  set(s: Series): void;
  close(): void;
}

/** chart draws one series of s (cpu or memMiB) in el. */
export async function chart(el: HTMLElement, title: string, field: "cpu" | "memMiB", unit: string): Promise<Chart> {
  const [{ default: UPlot }] = await Promise.all([import("uplot"), import("uplot/dist/uPlot.min.css")]);
  const opts: uPlot.Options = {
    title,
    width: Math.max(300, Math.min(560, el.clientWidth || 560)),
    height: 200,
    series: [{}, { label: unit, stroke: field === "cpu" ? "#2a6fdb" : "#2a9d5c", width: 2, fill: field === "cpu" ? "#2a6fdb22" : "#2a9d5c22" }],
    axes: [{}, { label: unit }],
    // One sample alone would stretch the time axis over years: give it a
    // minute each side.
    scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - 60, max + 60] : [min, max]) }, y: { range: (_u, _min, max) => [0, Math.max(field === "cpu" ? 100 : 64, max * 1.1)] } },
  };
  const plot = new UPlot(opts, [[], []], el);
  return {
    set(s) {
      plot.setData([s.t, s[field]]);
      el.dataset.points = String(s.t.length);
      el.dataset.last = s.t.length ? String(s[field][s.t.length - 1]) : "";
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
