import { describe, expect, it } from "vitest";
import { csvHeader, rowsOf, split, summarize, toCSV } from "./report";
import { chartLines } from "./pages/reports";
import type { UsageSample } from "./types";

const t = (s: number) => new Date(Date.UTC(2026, 11, 6, 8, 0, s)).toISOString();
const samples: UsageSample[] = [
  { time: t(10), host: "h1", vm: "b", vcpus: 2, cpuSeconds: 10, rssBytes: 200, hasIO: true, diskReadBytes: 1000, diskWriteBytes: 0, netRxBytes: 0, netTxBytes: 50 },
  { time: t(0), host: "h1", vm: "b", vcpus: 2, cpuSeconds: 0, rssBytes: 100, hasIO: true, diskReadBytes: 0, diskWriteBytes: 0, netRxBytes: 0, netTxBytes: 0 },
  { time: t(0), host: "h1", vm: "", vcpus: 4, cpuSeconds: 100, rssBytes: 2 ** 30 },
  { time: t(20), host: "h1", vm: "", vcpus: 4, cpuSeconds: 120, rssBytes: 2 * 2 ** 30 },
  { time: t(0), host: "h1", vm: "a", vcpus: 1, cpuSeconds: 5, rssBytes: 10 },
  { time: t(10), host: "h1", vm: "a", vcpus: 1, cpuSeconds: 1, rssBytes: 20 }, // its VMM restarted
  { time: t(10), host: "h1", vm: "a", vcpus: 1, cpuSeconds: 2, rssBytes: 20 }, // same time: skipped
];

describe("report", () => {
  it("splits: hosts first, then VMs by name, each by time", () => {
    expect(split(samples).map((s) => `${s.host}/${s.vm}:${s.samples.length}`)).toEqual(["h1/:2", "h1/a:3", "h1/b:2"]);
    expect(split(samples)[2].samples[0].time).toBe(t(0));
  });
  it("derives rates per interval as govisor report does", () => {
    const [host, a, b] = split(samples).map(rowsOf);
    expect(host).toEqual([expect.objectContaining({ cpuPercent: 25, memoryBytes: 2 * 2 ** 30, hasIO: false })]);
    // a counter that went down counts what the new process counted
    expect(a.map((r) => r.cpuPercent)).toEqual([10]);
    expect(b[0]).toMatchObject({ cpuPercent: 50, memoryBytes: 200, hasIO: true, diskReadBps: 100, netTxBps: 5 });
  });
  it("summarizes, weighted by time", () => {
    const s = summarize({ host: "h", vm: "v", samples: [0, 10, 30].map((x, i) => ({ time: t(x), vcpus: 1, cpuSeconds: [0, 10, 10][i], rssBytes: [0, 100, 400][i] })) });
    expect(s.avgCPUPercent).toBeCloseTo(100 / 3);
    expect(s.peakCPUPercent).toBe(100);
    expect(s.avgMemoryBytes).toBe(300);
    expect(s.peakMemoryBytes).toBe(400);
    expect(s.hasIO).toBe(false);
  });
  it("writes govisor report's CSV", () => {
    const csv = toCSV(split(samples).flatMap(rowsOf));
    expect(csv.split("\n")).toEqual([
      csvHeader.join(","),
      "2026-12-06T08:00:20Z,h1,,25.00,2147483648,,,,",
      "2026-12-06T08:00:10Z,h1,a,10.00,20,,,,",
      "2026-12-06T08:00:10Z,h1,b,50.00,200,100.0,0.0,0.0,5.0",
      "",
    ]);
    expect(toCSV([{ end: 0, host: 'x,"y"', vm: "", cpuPercent: 0, memoryBytes: 0, hasIO: false, diskReadBps: 0, diskWriteBps: 0, netRxBps: 0, netTxBps: 0 }]).split("\n")[1]).toBe(
      '1970-01-01T00:00:00Z,"x,""y""",,0.00,0,,,,',
    );
  });
  it("puts series on shared times for the charts", () => {
    const [, a, b] = split(samples).map((s) => ({ label: s.vm, rows: rowsOf(s) }));
    const c = chartLines([a, b], (r) => r.cpuPercent);
    expect(c.t).toEqual([Date.parse(t(10)) / 1000]);
    expect(c.lines).toEqual([
      { label: "a", values: [10] },
      { label: "b", values: [50] },
    ]);
  });
});
