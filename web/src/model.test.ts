import { describe, expect, it } from "vitest";
import { actionsFor, bytes, countStates, filterSort, inputFor, memoryMiB, migrationProgress, rates } from "./model";
import { errorFrom } from "./api";
import { coalesce } from "./dom";
import { specFrom } from "./pages/create";
import type { VM } from "./types";

const vm = (name: string, state: string, host = "h1", cpus = 1, memory = "256M"): VM => ({
  spec: { name, kernel: "/k", cpus, memory },
  status: { state, host },
});
const vms = [vm("web-2", "running", "h2", 4, "2G"), vm("db", "stopped", "h1", 2, "1G"), vm("web-1", "running", "h1", 1, "512M"), vm("cache", "paused", "h2")];

describe("filterSort", () => {
  it.each([
    ["", "name", false, ["cache", "db", "web-1", "web-2"]],
    ["", "name", true, ["web-2", "web-1", "db", "cache"]],
    ["web", "name", false, ["web-1", "web-2"]],
    ["WEB h2", "name", false, ["web-2"]],
    ["state:running", "name", false, ["web-1", "web-2"]],
    ["state:run", "name", false, []],
    ["h2", "state", false, ["cache", "web-2"]],
    ["", "memory", true, ["web-2", "db", "web-1", "cache"]],
    ["", "cpus", false, ["cache", "web-1", "db", "web-2"]],
    ["", "host", false, ["db", "web-1", "cache", "web-2"]],
  ] as const)("filter %j by %s desc=%s", (filter, key, desc, want) => {
    expect(filterSort(vms, filter, key, desc).map((v) => v.spec.name)).toEqual(want);
  });
  it("keeps 1000 VMs fast", () => {
    const many = Array.from({ length: 1000 }, (_, i) => vm(`vm-${i}`, i % 3 ? "running" : "stopped", `h${i % 7}`));
    const t0 = performance.now();
    const got = filterSort(many, "state:running h3", "name", false);
    expect(performance.now() - t0).toBeLessThan(50);
    expect(got.length).toBeGreaterThan(0);
  });
});

describe("memoryMiB", () => {
  it.each([
    ["512M", 512],
    ["2G", 2048],
    ["1T", 1048576],
    ["300", 300],
    ["2GiB", 2048],
    ["lots", 0],
    [undefined, 256],
  ])("%s is %d MiB", (s, want) => expect(memoryMiB(s)).toBe(want));
});

describe("rates", () => {
  const t = (s: number) => new Date(Date.UTC(2026, 11, 6, 8, 0, s)).toISOString();
  it("turns cumulative CPU seconds into percent of a CPU", () => {
    const s = rates(
      [
        { time: t(10), vm: "a", cpuSeconds: 5, rssBytes: 100 << 20 },
        { time: t(0), vm: "a", cpuSeconds: 0, rssBytes: 50 << 20 },
        { time: t(20), vm: "a", cpuSeconds: 25, rssBytes: 200 << 20 },
        { time: t(20), vm: "", cpuSeconds: 1000 },
        { time: t(30), vm: "a", cpuSeconds: 1, rssBytes: 10 << 20 }, // VMM restarted
      ],
      "a",
    );
    expect(s.cpu).toEqual([50, 200, 0]);
    expect(s.memMiB).toEqual([100, 200, 10]);
    expect(s.t.length).toBe(3);
  });
  it("needs two samples", () => expect(rates([{ time: t(0), vm: "", cpuSeconds: 1 }], "").t).toEqual([]));
  it("turns disk and network counters into KiB/s, where the VMM gave them", () => {
    const io = (s: number, d: number, n: number, hasIO = true) => ({ time: t(s), vm: "a", cpuSeconds: 0, hasIO, diskReadBytes: d, diskWriteBytes: d * 2, netRxBytes: n, netTxBytes: 0 });
    const s = rates([io(0, 0, 0), io(10, 10240, 2048), io(20, 10240, 1024), io(30, 0, 0, false)], "a");
    expect(s.diskRead).toEqual([1, 0, null]);
    expect(s.diskWrite).toEqual([2, 0, null]);
    expect(s.netRx).toEqual([0.2, 0.1, null]); // 1024 after 2048: the VMM restarted
    expect(s.netTx).toEqual([0, 0, null]);
  });
});

describe("forms and errors", () => {
  it.each([
    ["name", "name"],
    ["disks[0].path", "disk"],
    ["disks[0].volume", "disk"],
    ["nics[0].network", "network"],
    ["nics", "network"],
    ["disks[1].path", ""],
    ["balloon", ""],
    [undefined, ""],
  ])("field %s is input %j", (f, want) => expect(inputFor(f)).toBe(want));

  it("builds a spec", () => {
    expect(specFrom({ name: " a ", kernel: "/k", cpus: "2", memory: "1G", disk: "tank/root", network: "lan", initrd: "", cmdline: "", boot: "pvh", restartPolicy: "never" })).toEqual({
      name: "a",
      kernel: "/k",
      cpus: 2,
      memory: "1G",
      boot: "pvh",
      restartPolicy: "never",
      disks: [{ pool: "tank", volume: "root" }],
      nics: [{ network: "lan" }],
    });
    expect(specFrom({ name: "a", kernel: "/k", disk: "/img/a.qcow2" } as Record<string, string>).disks).toEqual([{ path: "/img/a.qcow2" }]);
    expect(specFrom({ name: "a", kernel: "/k", ha: "true", restartPriority: "high" } as Record<string, string>)).toMatchObject({ ha: true, restartPriority: "high" });
    expect(specFrom({ name: "a", kernel: "/k", ha: "true", restartPriority: "medium" } as Record<string, string>)).toEqual({ name: "a", kernel: "/k", ha: true });
    expect(specFrom({ name: "a", kernel: "/k", ha: "", restartPriority: "high" } as Record<string, string>).restartPriority).toBeUndefined();
  });

  it("reads the API's error answers", () => {
    const e = errorFrom(400, { error: "bad name", field: "name" }, "");
    expect([e.status, e.message, e.field]).toEqual([400, "bad name", "name"]);
    expect(errorFrom(502, undefined, "Bad Gateway\n").message).toBe("Bad Gateway");
    expect(errorFrom(500, undefined, "").message).toBe("HTTP 500");
  });

  it("offers the actions of each state", () => {
    expect(actionsFor(vm("a", "running"))).toContain("pause");
    expect(actionsFor(vm("a", "paused"))).toContain("resume");
    expect(actionsFor({ spec: { name: "a", kernel: "/k" } })).toEqual(["start", "delete"]);
    expect(countStates(vms).get("running")).toBe(2);
    expect(bytes(1536)).toBe("1.5 KiB");
  });
});

describe("coalesce", () => {
  it("runs a burst of calls as two runs", async () => {
    let runs = 0;
    let release: () => void = () => {};
    const f = coalesce(
      () =>
        new Promise<void>((r) => {
          runs++;
          release = r;
        }),
    );
    for (let i = 0; i < 1000; i++) f();
    expect(runs).toBe(1);
    release();
    await new Promise((r) => setTimeout(r, 0));
    expect(runs).toBe(2);
    release();
    await new Promise((r) => setTimeout(r, 0));
    expect(runs).toBe(2);
  });
});

describe("migrationProgress", () => {
  it.each([
    [undefined, undefined],
    [{}, undefined],
    [{ state: "running", bytesSent: 0, remainingPages: 0 }, 0],
    [{ state: "running", bytesSent: 4096 * 3, remainingPages: 1 }, 0.75],
    [{ state: "completed", bytesSent: 10, remainingPages: 5 }, 1],
    [{ state: "failed", bytesSent: 4096, remainingPages: 1 }, 0.5],
  ])("%j is %s", (m, want) => expect(migrationProgress(m)).toBe(want));
});
