// Pure functions behind the pages (unit-tested in model.test.ts).
import { ApiError } from "./api";
import type { ClusterSettings, DiskSpec, Host, UsageSample, VM, VMEvent, VolumeCreate } from "./types";

/** stateOf is a VM's observed state, "stopped" before it has any. */
export function stateOf(v: VM): string {
  return v.status?.state || "stopped";
}

/** SortKey names a column of the VM list. */
export type SortKey = "name" | "state" | "host" | "cpus" | "memory";

/** memoryMiB reads an API memory size ("512M", "2G", "1T", "256") as MiB. */
export function memoryMiB(s: string | undefined): number {
  const m = /^(\d+)\s*([MGT]?)i?B?$/i.exec((s ?? "256M").trim());
  if (!m) return 0;
  const n = Number(m[1]);
  switch (m[2].toUpperCase()) {
    case "G":
      return n * 1024;
    case "T":
      return n * 1024 * 1024;
    default:
      return n;
  }
}

function sortValue(v: VM, key: SortKey): string | number {
  switch (key) {
    case "state":
      return stateOf(v);
    case "host":
      return v.status?.host || v.host || "";
    case "cpus":
      return v.spec.cpus ?? 1;
    case "memory":
      return memoryMiB(v.spec.memory);
    default:
      return v.spec.name;
  }
}

/**
 * filterSort keeps the VMs whose name, state or host contains every word of
 * filter (case-insensitive; "state:running" matches the state exactly) and
 * sorts them by key, then by name.
 */
export function filterSort(vms: VM[], filter: string, key: SortKey, desc: boolean): VM[] {
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  const keep = vms.filter((v) =>
    words.every((w) => {
      if (w.startsWith("state:")) return stateOf(v) === w.slice(6);
      return [v.spec.name, stateOf(v), v.status?.host || v.host || ""].some((f) => f.toLowerCase().includes(w));
    }),
  );
  const dir = desc ? -1 : 1;
  return keep.sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    if (x < y) return -dir;
    if (x > y) return dir;
    return a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0;
  });
}

/** countStates counts VMs by observed state. */
export function countStates(vms: VM[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const v of vms) m.set(stateOf(v), (m.get(stateOf(v)) ?? 0) + 1);
  return m;
}

/** actionsFor lists the lifecycle actions that make sense in a state. */
export function actionsFor(v: VM): string[] {
  switch (stateOf(v)) {
    case "running":
      if (v.status?.migration?.state === "running") return ["cancel-migrate"];
      return ["stop", "force-stop", "restart", "reboot", "pause", "snapshot", "migrate"];
    case "paused":
      return ["resume", "stop", "force-stop", "snapshot"];
    case "pending":
    case "stopping":
      return ["force-stop"];
    default:
      return ["start", "delete"];
  }
}

/**
 * migrationProgress is how far a live migration got, 0 to 1, from its
 * status: the bytes sent against those sent plus the pages still to send
 * (4 KiB each); undefined when there is nothing to show.
 */
export function migrationProgress(m: { state?: string; bytesSent?: number; remainingPages?: number } | undefined): number | undefined {
  if (!m?.state) return undefined;
  if (m.state === "completed") return 1;
  const sent = m.bytesSent ?? 0;
  const left = (m.remainingPages ?? 0) * 4096;
  return sent + left > 0 ? sent / (sent + left) : 0;
}

/**
 * Series are chart columns: times (Unix seconds), CPU %, resident MiB, and
 * disk and network rates in KiB/s (null where the VMM gave no counters).
 */
export interface Series {
  t: number[];
  cpu: number[];
  memMiB: number[];
  diskRead: (number | null)[];
  diskWrite: (number | null)[];
  netRx: (number | null)[];
  netTx: (number | null)[];
}

/**
 * rates turns cumulative usage samples of one VM (or the host, vm "") into
 * chart series: CPU use in percent of one CPU between consecutive samples
 * (cpuSeconds are cumulative, api/openapi.yaml UsageSample), resident
 * memory, and disk and network byte rates. A counter that went down (a VMM
 * restarted) starts over.
 */
export function rates(samples: UsageSample[], vm: string): Series {
  const s = samples.filter((x) => (x.vm ?? "") === vm).sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  const out: Series = { t: [], cpu: [], memMiB: [], diskRead: [], diskWrite: [], netRx: [], netTx: [] };
  for (let i = 1; i < s.length; i++) {
    const a = s[i - 1];
    const b = s[i];
    const t0 = Date.parse(a.time) / 1000;
    const t1 = Date.parse(b.time) / 1000;
    const c0 = a.cpuSeconds ?? 0;
    const c1 = b.cpuSeconds ?? 0;
    if (t1 <= t0) continue;
    const cpu = c1 >= c0 ? ((c1 - c0) / (t1 - t0)) * 100 : 0;
    const io = !!a.hasIO && !!b.hasIO;
    const kib = (x?: number, y?: number) => (io ? Math.round(((y ?? 0) >= (x ?? 0) ? (y ?? 0) - (x ?? 0) : y ?? 0) / (t1 - t0) / 102.4) / 10 : null);
    out.t.push(t1);
    out.cpu.push(Math.round(cpu * 10) / 10);
    out.memMiB.push(Math.round((b.rssBytes ?? 0) / 1048576));
    out.diskRead.push(kib(a.diskReadBytes, b.diskReadBytes));
    out.diskWrite.push(kib(a.diskWriteBytes, b.diskWriteBytes));
    out.netRx.push(kib(a.netRxBytes, b.netRxBytes));
    out.netTx.push(kib(a.netTxBytes, b.netTxBytes));
  }
  return out;
}

/** bytes prints a byte count with a binary unit. */
export function bytes(n: number | undefined): string {
  if (n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** FormErrors maps a form input to the API's error about it. */
export type FormErrors = Map<string, string>;

/**
 * inputFor maps the API's error field (such as "disks[0].path" or
 * "nics[0].network") to the create form's input that holds it; fields the
 * form has no input for go to "" (shown above the form).
 */
export function inputFor(field: string | undefined): string {
  if (!field) return "";
  const known = ["name", "cpus", "memory", "kernel", "initrd", "cmdline", "boot", "restartPolicy", "restartPriority", "stopTimeout"];
  if (known.includes(field)) return field;
  if (/^disks(\[0\])?(\.(pool|volume))?$/.test(field)) return "disk";
  if (/^disks(\[0\])?\.path$/.test(field)) return "disk";
  if (/^nics(\[0\])?(\.network)?$/.test(field)) return "network";
  return "";
}

/** Alarm is something on the overview that needs a person's attention. */
export interface Alarm {
  level: "critical" | "warning";
  text: string;
  href: string;
}

/**
 * alarms derives the overview's alarms from the host and VM lists: hosts
 * unreachable (their HA VMs restart elsewhere), VMs stuck on a host
 * entering maintenance, hosts with more memory promised than they have or
 * nearly all of their CPUs busy, failed VMs and failed migrations.
 * Critical ones come first.
 */
export function alarms(hosts: Host[], vms: VM[]): Alarm[] {
  const out: Alarm[] = [];
  const host = (n: string) => `#/hosts/${encodeURIComponent(n)}`;
  for (const x of hosts) {
    if (x.state === "unreachable") out.push({ level: "critical", text: `host ${x.name} is unreachable`, href: host(x.name) });
    for (const s of x.stuck ?? []) out.push({ level: "warning", text: `host ${x.name} cannot leave for maintenance: ${s}`, href: host(x.name) });
    if (x.memoryMiB && (x.allocatedMiB ?? 0) > x.memoryMiB)
      out.push({ level: "warning", text: `host ${x.name} has ${x.allocatedMiB} MiB of VMs in ${x.memoryMiB} MiB of memory`, href: host(x.name) });
    if (x.cpus && (x.load?.cpuBusy ?? 0) / x.cpus > 0.9)
      out.push({ level: "warning", text: `host ${x.name} keeps ${(x.load!.cpuBusy! / x.cpus * 100).toFixed(0)}% of its CPUs busy`, href: host(x.name) });
  }
  for (const v of vms) {
    const vm = `#/vms/${encodeURIComponent(v.spec.name)}`;
    if (stateOf(v) === "failed" && v.desired === "running")
      out.push({ level: "critical", text: `VM ${v.spec.name} failed${v.status?.exitReason ? `: ${v.status.exitReason}` : ""}`, href: vm });
    else if (stateOf(v) === "failed") out.push({ level: "warning", text: `VM ${v.spec.name} failed${v.status?.exitReason ? `: ${v.status.exitReason}` : ""}`, href: vm });
    if (v.status?.migration?.state === "failed")
      out.push({ level: "warning", text: `migration of ${v.spec.name} to ${v.status.migration.to ?? "?"} failed: ${v.status.migration.error ?? ""}`, href: vm });
  }
  return out.sort((a, b) => (a.level === b.level ? 0 : a.level === "critical" ? -1 : 1));
}

/** eventText says what an event of GET /v1/events changed. */
export function eventText(kind: string, ev: VMEvent): string {
  switch (kind) {
    case "status": {
      const s = ev.status;
      let t = s?.state ?? "";
      if (s?.host) t += ` on ${s.host}`;
      if (s?.migration?.state === "running") t += `, migrating to ${s.migration.to ?? "?"}`;
      if (s?.exitReason && (s.state === "failed" || s.state === "stopped")) t += ` (${s.exitReason})`;
      return t;
    }
    case "spec":
      return `defined, desired ${ev.desired ?? "?"}`;
    case "deleted":
      return "deleted";
    case "cluster": {
      const c = ev.cluster;
      if (!c) return "cluster";
      const where = c.from && c.host ? ` ${c.from} → ${c.host}` : c.host ? ` ${c.host}` : "";
      return `${c.kind}${where}: ${c.reason}${c.by ? ` (by ${c.by})` : ""}`;
    }
    default:
      return kind;
  }
}

/**
 * runAll runs f on every item, at most limit at a time, and calls done
 * after each with the count finished so far; it returns the errors by item
 * (a bulk action on 1,000 VMs must neither send 1,000 requests at once nor
 * wait for each in turn).
 */
export async function runAll<T>(items: T[], limit: number, f: (x: T) => Promise<unknown>, done?: (n: number) => void): Promise<Map<T, Error>> {
  const errs = new Map<T, Error>();
  let next = 0;
  let n = 0;
  const worker = async () => {
    while (next < items.length) {
      const x = items[next++];
      try {
        await f(x);
      } catch (e) {
        errs.set(x, e instanceof Error ? e : new Error(String(e)));
      }
      done?.(++n);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return errs;
}

/**
 * settingsFrom reads the cluster settings form. What is not a number (or,
 * for hostFailures, a whole number) is refused here, naming the field as
 * the API would; ranges are left to the API's validation.
 */
export function settingsFrom(v: Record<string, string>): ClusterSettings {
  const num = (field: string, whole: boolean): number | undefined => {
    const s = (v[field] ?? "").trim();
    if (s === "") return undefined;
    const n = Number(s);
    if (!Number.isFinite(n) || (whole && !Number.isInteger(n))) throw new ApiError(400, `${JSON.stringify(s)}: give a ${whole ? "whole " : ""}number`, field);
    return n;
  };
  return { haAdmission: v.haAdmission || undefined, hostFailures: num("hostFailures", true), balance: v.balance || undefined, balanceThreshold: num("balanceThreshold", false) };
}

/**
 * volumeCreateFrom reads the new-volume form: mode "empty" takes the size,
 * "from" an image file of the host, "fromVolume" a volume of the pool.
 */
export function volumeCreateFrom(v: Record<string, string>): VolumeCreate {
  const c: VolumeCreate = { name: (v.name ?? "").trim() };
  if (v.format) c.format = v.format;
  switch (v.mode) {
    case "from":
      c.from = (v.from ?? "").trim();
      if (!c.from) throw new ApiError(400, "give the image file's path on the host", "from");
      break;
    case "fromVolume":
      c.fromVolume = v.fromVolume ?? "";
      if (!c.fromVolume) throw new ApiError(400, "the pool has no volume to copy", "fromVolume");
      break;
    default:
      c.size = (v.size ?? "").trim();
  }
  return c;
}

/** diskFrom reads the attach-disk form: POOL/VOLUME or an absolute path. */
export function diskFrom(v: Record<string, string>): DiskSpec {
  const s = (v.disk ?? "").trim();
  if (!s) throw new ApiError(400, "give POOL/VOLUME or the image's absolute path", "disk");
  const pv = /^([a-z0-9-]+)\/([^/]+)$/.exec(s);
  const d: DiskSpec = pv ? { pool: pv[1], volume: pv[2] } : { path: s };
  if (v.format) d.format = v.format;
  if (v.readOnly === "true") d.readOnly = true;
  return d;
}

/** volumeFraction is how far the making of a volume got, 0 to 1 (undefined: no progress known). */
export function volumeFraction(p: { doneBytes?: number; totalBytes?: number } | undefined): number | undefined {
  if (!p || !p.totalBytes) return undefined;
  return Math.max(0, Math.min(1, (p.doneBytes ?? 0) / p.totalBytes));
}
