// The utilization report (issue 14 "reports"): the agent's cumulative
// usage samples turned into per-interval rows, per-series summaries and
// CSV, as `govisor report` does (internal/report: Rows, Summarize,
// WriteCSV; the same columns, so a downloaded CSV reads like the CLI's).
import type { UsageSample } from "./types";

/** Row is one sampling interval of one VM, or of a host (vm ""). */
export interface Row {
  end: number; // Unix ms
  host: string;
  vm: string;
  cpuPercent: number; // VM: of its vCPUs; host: of all its CPUs
  memoryBytes: number;
  hasIO: boolean;
  diskReadBps: number;
  diskWriteBps: number;
  netRxBps: number;
  netTxBps: number;
}

/** Series are the samples of one VM (or host), in time order. */
export interface Series {
  host: string;
  vm: string;
  samples: UsageSample[];
}

/** split groups samples into series: the hosts' first, then VMs by name. */
export function split(samples: UsageSample[]): Series[] {
  const idx = new Map<string, Series>();
  for (const s of samples) {
    const k = `${s.host ?? ""}\u0000${s.vm ?? ""}`;
    let x = idx.get(k);
    if (!x) idx.set(k, (x = { host: s.host ?? "", vm: s.vm ?? "", samples: [] }));
    x.samples.push(s);
  }
  const out = [...idx.values()];
  for (const x of out) x.samples.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  return out.sort((a, b) => {
    if ((a.vm === "") !== (b.vm === "")) return a.vm === "" ? -1 : 1;
    if (a.vm !== b.vm) return a.vm < b.vm ? -1 : 1;
    return a.host < b.host ? -1 : a.host > b.host ? 1 : 0;
  });
}

// delta is how much a cumulative counter grew; one that went down was
// reset (the VMM restarted), and what the new one counted is the bound.
const delta = (a: number, b: number) => (b < a ? b : b - a);

/** rowsOf derives one row per interval of a series. */
export function rowsOf(s: Series): Row[] {
  const out: Row[] = [];
  for (let i = 1; i < s.samples.length; i++) {
    const a = s.samples[i - 1];
    const b = s.samples[i];
    const t0 = Date.parse(a.time);
    const t1 = Date.parse(b.time);
    const dt = (t1 - t0) / 1000;
    if (!(dt > 0)) continue;
    const cpus = Math.max(1, b.vcpus ?? 0);
    const io = !!a.hasIO && !!b.hasIO;
    const rate = (x?: number, y?: number) => (io ? delta(x ?? 0, y ?? 0) / dt : 0);
    out.push({
      end: t1,
      host: s.host,
      vm: s.vm,
      cpuPercent: (delta(a.cpuSeconds ?? 0, b.cpuSeconds ?? 0) / dt / cpus) * 100,
      memoryBytes: b.rssBytes ?? 0,
      hasIO: io,
      diskReadBps: rate(a.diskReadBytes, b.diskReadBytes),
      diskWriteBps: rate(a.diskWriteBytes, b.diskWriteBytes),
      netRxBps: rate(a.netRxBytes, b.netRxBytes),
      netTxBps: rate(a.netTxBytes, b.netTxBytes),
    });
  }
  return out;
}

/** Summary is one series' figures over the whole window. */
export interface Summary {
  host: string;
  vm: string;
  vcpus: number;
  avgCPUPercent: number; // weighted by interval length
  peakCPUPercent: number;
  avgMemoryBytes: number;
  peakMemoryBytes: number;
  hasIO: boolean;
  diskBytes: number; // read + written
  netBytes: number; // received + sent
}

/** summarize sums a series up over its rows. */
export function summarize(s: Series): Summary {
  const rows = rowsOf(s);
  const last = s.samples[s.samples.length - 1];
  const sum: Summary = { host: s.host, vm: s.vm, vcpus: last?.vcpus ?? 0, avgCPUPercent: 0, peakCPUPercent: 0, avgMemoryBytes: 0, peakMemoryBytes: 0, hasIO: false, diskBytes: 0, netBytes: 0 };
  let secs = 0;
  let prev = s.samples.length ? Date.parse(s.samples[0].time) : 0;
  for (const r of rows) {
    const dt = (r.end - prev) / 1000;
    prev = r.end;
    secs += dt;
    sum.avgCPUPercent += r.cpuPercent * dt;
    sum.avgMemoryBytes += r.memoryBytes * dt;
    sum.peakCPUPercent = Math.max(sum.peakCPUPercent, r.cpuPercent);
    sum.peakMemoryBytes = Math.max(sum.peakMemoryBytes, r.memoryBytes);
    if (r.hasIO) {
      sum.hasIO = true;
      sum.diskBytes += (r.diskReadBps + r.diskWriteBps) * dt;
      sum.netBytes += (r.netRxBps + r.netTxBps) * dt;
    }
  }
  if (secs > 0) {
    sum.avgCPUPercent /= secs;
    sum.avgMemoryBytes = Math.round(sum.avgMemoryBytes / secs);
  }
  return sum;
}

/** csvHeader is internal/report.CSVHeader. */
export const csvHeader = ["time", "host", "vm", "cpu_percent", "memory_bytes", "disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_rx_bytes_per_s", "net_tx_bytes_per_s"];

// field quotes a CSV field as RFC 4180 (encoding/csv) does.
const field = (s: string) => (/[",\r\n]/.test(s) || s.startsWith(" ") ? `"${s.replace(/"/g, '""')}"` : s);

/** toCSV writes rows as internal/report.WriteCSV does: time is the interval's end (RFC 3339, UTC). */
export function toCSV(rows: Row[]): string {
  const lines = [csvHeader.join(",")];
  for (const r of rows) {
    const io = (v: number) => (r.hasIO ? v.toFixed(1) : "");
    lines.push(
      [new Date(r.end).toISOString().replace(/\.\d{3}Z$/, "Z"), r.host, r.vm, r.cpuPercent.toFixed(2), String(Math.round(r.memoryBytes)), io(r.diskReadBps), io(r.diskWriteBps), io(r.netRxBps), io(r.netTxBps)]
        .map(field)
        .join(","),
    );
  }
  return lines.join("\n") + "\n";
}
