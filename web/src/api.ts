// The agent's REST API (api/openapi.yaml) as the browser uses it: the
// session cookie authenticates, and every request that changes something
// carries the session's CSRF token in X-CSRF-Token.
import type { BalancePlan, ClusterEvent, ClusterSettings, DiskSpec, Host, Network, Pool, Snapshot, UsageReport, VM, VMSpec, Volume, VolumeCreate } from "./types";

/** ApiError is an error answer: its status, message and the field it names. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public field?: string,
  ) {
    super(message);
  }
}

let csrf = "";

/** setCSRF keeps the session's CSRF token for later requests. */
export function setCSRF(token: string): void {
  csrf = token;
}

/** call sends one API request and returns the JSON answer (undefined for 204). */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (r.status === 204) return undefined as T;
  const text = await r.text();
  let data: unknown = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: handled below
  }
  if (!r.ok) {
    const err = errorFrom(r.status, data, text);
    // A session that ended (expired, agent restarted) sends the user back
    // to the login page, which says why.
    if (r.status === 401 && !path.startsWith("/ui/api/") && typeof window !== "undefined") {
      window.dispatchEvent(new CustomEvent("govisor:unauthorized", { detail: err }));
    }
    throw err;
  }
  return data as T;
}

/** errorFrom turns an error answer into an ApiError. */
export function errorFrom(status: number, data: unknown, text: string): ApiError {
  if (data && typeof data === "object" && "error" in data) {
    const e = data as { error: string; field?: string };
    return new ApiError(status, e.error, e.field || undefined);
  }
  return new ApiError(status, text.trim() || `HTTP ${status}`);
}

/** SessionInfo is the answer of a login and of GET /ui/api/session. */
export interface SessionInfo {
  csrfToken: string;
  expires?: string;
  open?: boolean;
}

const vm = (name: string) => `/v1/vms/${encodeURIComponent(name)}`;

export const api = {
  session: () => call<SessionInfo>("GET", "/ui/api/session"),
  login: (token: string) => call<SessionInfo>("POST", "/ui/api/login", { token }),
  logout: () => call<void>("POST", "/ui/api/logout"),
  hosts: () => call<{ items: Host[] | null }>("GET", "/v1/hosts").then((l) => l.items ?? []),
  vms: () => call<{ items: VM[] | null }>("GET", "/v1/vms").then((l) => l.items ?? []),
  vm: (name: string) => call<VM>("GET", vm(name)),
  createVM: (spec: VMSpec, start: boolean) => call<VM>("POST", `/v1/vms?start=${start}`, spec),
  deleteVM: (name: string) => call<void>("DELETE", vm(name)),
  act: (name: string, action: string) => call<VM>("POST", `${vm(name)}/${action}`),
  snapshot: (name: string, snap: string) => call<Snapshot>("POST", `${vm(name)}/snapshot`, { name: snap }),
  migrate: (name: string, host: string, bandwidth?: number) => call<VM>("POST", `${vm(name)}/migrate`, bandwidth ? { host, bandwidth } : { host }),
  cancelMigrate: (name: string) => call<VM>("DELETE", `${vm(name)}/migrate`),
  restore: (name: string, snap: string) => call<VM>("POST", `${vm(name)}/restore`, { snapshot: snap }),
  snapshots: (name: string) => call<{ items: Snapshot[] | null }>("GET", `${vm(name)}/snapshots`).then((l) => l.items ?? []),
  networks: () => call<{ items: Network[] | null }>("GET", "/v1/networks").then((l) => l.items ?? []),
  createNetwork: (n: Network) => call<Network>("POST", "/v1/networks", n),
  deleteNetwork: (name: string) => call<void>("DELETE", `/v1/networks/${encodeURIComponent(name)}`),
  createPool: (p: Pool) => call<Pool>("POST", "/v1/pools", p),
  deletePool: (name: string) => call<void>("DELETE", `/v1/pools/${encodeURIComponent(name)}`),
  pools: () => call<{ items: Pool[] | null }>("GET", "/v1/pools").then((l) => l.items ?? []),
  usage: (q: { vm?: string; from?: Date; to?: Date; step?: string }) => {
    const p = new URLSearchParams();
    if (q.vm) p.set("vm", q.vm);
    if (q.from) p.set("from", q.from.toISOString());
    if (q.to) p.set("to", q.to.toISOString());
    if (q.step) p.set("step", q.step);
    return call<UsageReport>("GET", `/v1/usage?${p}`);
  },
  attachDisk: (name: string, d: DiskSpec) => call<VM>("POST", `${vm(name)}/disks`, d),
  detachDisk: (name: string, index: number) => call<VM>("DELETE", `${vm(name)}/disks/${index}`),
  clusterEvents: (limit: number) => call<{ items: ClusterEvent[] | null }>("GET", `/v1/cluster/events?limit=${limit}`).then((l) => l.items ?? []),
  settings: () => call<ClusterSettings>("GET", "/v1/cluster/settings"),
  putSettings: (s: ClusterSettings) => call<ClusterSettings>("PUT", "/v1/cluster/settings", s),
  balancePlan: () => call<BalancePlan>("GET", "/v1/cluster/balance"),
  applyBalance: () => call<BalancePlan>("POST", "/v1/cluster/balance"),
  maintenance: (host: string, on: boolean) => call<Host>("PUT", `/v1/hosts/${encodeURIComponent(host)}/maintenance`, { maintenance: on }),
  volumes: (pool: string) => call<{ items: Volume[] | null }>("GET", `/v1/pools/${encodeURIComponent(pool)}/volumes`).then((l) => l.items ?? []),
  volume: (pool: string, v: string) => call<Volume>("GET", `/v1/pools/${encodeURIComponent(pool)}/volumes/${encodeURIComponent(v)}`),
  createVolume: (pool: string, c: VolumeCreate) => call<Volume>("POST", `/v1/pools/${encodeURIComponent(pool)}/volumes`, c),
  deleteVolume: (pool: string, v: string) => call<void>("DELETE", `/v1/pools/${encodeURIComponent(pool)}/volumes/${encodeURIComponent(v)}`),
};
