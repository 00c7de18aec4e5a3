import { describe, expect, it } from "vitest";
import { ApiError } from "./api";
import { alarms, diskFrom, eventText, runAll, settingsFrom, volumeCreateFrom, volumeFraction } from "./model";
import { matches, merged } from "./pages/events";
import type { Host, VM } from "./types";

describe("alarms", () => {
  const hosts: Host[] = [
    { name: "ok", cpus: 4, memoryMiB: 4096, allocatedMiB: 1024, state: "ready", load: { cpuBusy: 1 } },
    { name: "gone", state: "unreachable" },
    { name: "full", cpus: 2, memoryMiB: 1024, allocatedMiB: 2048, load: { cpuBusy: 1.9 } },
    { name: "maint", state: "entering-maintenance", stuck: ["db: no host has room"] },
  ];
  const vms: VM[] = [
    { spec: { name: "up", kernel: "/k" }, desired: "running", status: { state: "running" } },
    { spec: { name: "dead", kernel: "/k" }, desired: "running", status: { state: "failed", exitReason: "exit status 1" } },
    { spec: { name: "was", kernel: "/k" }, desired: "stopped", status: { state: "failed" } },
    { spec: { name: "mig", kernel: "/k" }, status: { state: "running", migration: { state: "failed", to: "ok", error: "timeout" } } },
  ];
  it("lists what needs attention, critical first", () => {
    const a = alarms(hosts, vms);
    expect(a.map((x) => `${x.level} ${x.text}`)).toEqual([
      "critical host gone is unreachable",
      "critical VM dead failed: exit status 1",
      "warning host full has 2048 MiB of VMs in 1024 MiB of memory",
      "warning host full keeps 95% of its CPUs busy",
      "warning host maint cannot leave for maintenance: db: no host has room",
      "warning VM was failed",
      "warning migration of mig to ok failed: timeout",
    ]);
    expect(a[0].href).toBe("#/hosts/gone");
    expect(a[1].href).toBe("#/vms/dead");
  });
  it("is empty when all is well", () => expect(alarms(hosts.slice(0, 1), vms.slice(0, 1))).toEqual([]));
});

describe("events", () => {
  it.each([
    ["status", { type: "status", vm: "a", status: { state: "running", host: "h1" } }, "running on h1"],
    ["status", { type: "status", vm: "a", status: { state: "running", host: "h1", migration: { state: "running", to: "h2" } } }, "running on h1, migrating to h2"],
    ["status", { type: "status", vm: "a", status: { state: "failed", exitReason: "exit status 1" } }, "failed (exit status 1)"],
    ["spec", { type: "spec", vm: "a", desired: "stopped" }, "defined, desired stopped"],
    ["deleted", { type: "deleted", vm: "a" }, "deleted"],
    ["cluster", { type: "cluster", vm: "a", cluster: { time: "", kind: "ha-restart", from: "h1", host: "h2", vm: "a", reason: "h1 died", by: "h3" } }, "ha-restart h1 → h2: h1 died (by h3)"],
    ["cluster", { type: "cluster", vm: "", cluster: { time: "", kind: "host-state", host: "h1", reason: "unreachable" } }, "host-state h1: unreachable"],
  ])("%s %j says %j", (kind, ev, want) => expect(eventText(kind, ev)).toBe(want));
  it("filters by every word", () => {
    const e = { at: new Date(), kind: "status", ev: { type: "status", vm: "web-1", status: { state: "running", host: "h2" } } };
    expect(matches(e, "")).toBe(true);
    expect(matches(e, "WEB running")).toBe(true);
    expect(matches(e, "h2")).toBe(true);
    expect(matches(e, "web deleted")).toBe(false);
  });
});

describe("runAll", () => {
  it("runs every item, at most limit at once, and collects the errors", async () => {
    let now = 0;
    let most = 0;
    const progress: number[] = [];
    const errs = await runAll(
      Array.from({ length: 50 }, (_, i) => i),
      8,
      async (i) => {
        most = Math.max(most, ++now);
        await new Promise((r) => setTimeout(r, i % 3));
        now--;
        if (i % 10 === 0) throw new Error(`no ${i}`);
      },
      (n) => progress.push(n),
    );
    expect(most).toBe(8);
    expect([...errs.keys()].sort((a, b) => a - b)).toEqual([0, 10, 20, 30, 40]);
    expect(errs.get(10)?.message).toBe("no 10");
    expect(progress).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect((await runAll([], 8, async () => {})).size).toBe(0);
  });
});

describe("forms", () => {
  const fieldOf = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return e instanceof ApiError ? e.field : "not an ApiError";
    }
    return "no error";
  };
  it("reads the cluster settings", () => {
    expect(settingsFrom({ haAdmission: "warn", hostFailures: "2", balance: "manual", balanceThreshold: "0.2" })).toEqual({ haAdmission: "warn", hostFailures: 2, balance: "manual", balanceThreshold: 0.2 });
    expect(settingsFrom({ haAdmission: "", hostFailures: "", balance: "", balanceThreshold: " " })).toEqual({});
    expect(fieldOf(() => settingsFrom({ hostFailures: "1.5" }))).toBe("hostFailures");
    expect(fieldOf(() => settingsFrom({ balanceThreshold: "lots" }))).toBe("balanceThreshold");
  });
  it("reads the new-volume form", () => {
    expect(volumeCreateFrom({ name: " d1 ", format: "qcow2", mode: "empty", size: "1G", from: "/x" })).toEqual({ name: "d1", format: "qcow2", size: "1G" });
    expect(volumeCreateFrom({ name: "d2", format: "raw", mode: "from", from: " /img/a.vmdk " })).toEqual({ name: "d2", format: "raw", from: "/img/a.vmdk" });
    expect(volumeCreateFrom({ name: "d3", format: "", mode: "fromVolume", fromVolume: "d1" })).toEqual({ name: "d3", fromVolume: "d1" });
    expect(fieldOf(() => volumeCreateFrom({ name: "d", mode: "from", from: "" }))).toBe("from");
    expect(fieldOf(() => volumeCreateFrom({ name: "d", mode: "fromVolume", fromVolume: "" }))).toBe("fromVolume");
  });
  it("reads the attach-disk form", () => {
    expect(diskFrom({ disk: "tank/d1", format: "", readOnly: "false" })).toEqual({ pool: "tank", volume: "d1" });
    expect(diskFrom({ disk: "/img/a.raw", format: "raw", readOnly: "true" })).toEqual({ path: "/img/a.raw", format: "raw", readOnly: true });
    expect(fieldOf(() => diskFrom({ disk: " " }))).toBe("disk");
  });
});

describe("volumeFraction", () => {
  it.each([
    [undefined, undefined],
    [{}, undefined],
    [{ doneBytes: 5, totalBytes: 0 }, undefined],
    [{ totalBytes: 8 }, 0],
    [{ doneBytes: 2, totalBytes: 8 }, 0.25],
    [{ doneBytes: 9, totalBytes: 8 }, 1],
  ])("%j is %s", (p, want) => expect(volumeFraction(p)).toBe(want));
});

describe("merged", () => {
  it("adds the cluster's earlier events the session has not seen, newest first", () => {
    const c = (s: number, reason: string) => ({ time: new Date(Date.UTC(2026, 11, 6, 8, 0, s)).toISOString(), kind: "balance", vm: "v", reason });
    const session = [
      { at: new Date(Date.UTC(2026, 11, 6, 8, 0, 30)), kind: "status", ev: { type: "status", vm: "v" } },
      { at: new Date(c(20, "b").time), kind: "cluster", ev: { type: "cluster", vm: "v", cluster: c(20, "b") } },
    ];
    const got = merged(session, [c(10, "a"), c(20, "b")]);
    expect(got.map((e) => `${e.kind} ${e.at.getUTCSeconds()}`)).toEqual(["status 30", "cluster 20", "cluster 10"]);
    expect(got[2].ev.cluster?.reason).toBe("a");
  });
});
