// The API's types the console uses (api/openapi.yaml, components.schemas).

export interface DiskSpec {
  path?: string;
  pool?: string;
  volume?: string;
  readOnly?: boolean;
  format?: string;
}

export interface NICSpec {
  network: string;
  mac?: string;
}

export interface VMSpec {
  name: string;
  cpus?: number;
  memory?: string;
  kernel: string;
  initrd?: string;
  cmdline?: string;
  boot?: string;
  restartPolicy?: string;
  disks?: DiskSpec[];
  nics?: NICSpec[];
  rng?: boolean;
  stopTimeout?: string;
  ha?: boolean;
  restartPriority?: string;
}

export interface MigrationStatus {
  state?: string;
  to?: string;
  round?: number;
  bytesSent?: number;
  remainingPages?: number;
  error?: string;
}

export interface VMStatus {
  state?: string;
  host?: string;
  pid?: number;
  since?: string;
  exitReason?: string;
  exitCode?: number | null;
  restarts?: number;
  migration?: MigrationStatus;
}

export interface VM {
  spec: VMSpec;
  desired?: string;
  host?: string;
  status?: VMStatus;
}

export interface Host {
  name: string;
  agentId?: string;
  version?: string;
  cpus?: number;
  memoryMiB?: number;
  allocatedMiB?: number;
  vms?: number;
  runningVMs?: number;
  store?: string;
  started?: string;
  cpuModel?: string;
  cpuVendor?: string;
  cpuFeatures?: string[] | null;
  labels?: Record<string, string> | null;
  api?: string[] | null;
  state?: string;
  leader?: boolean;
  stuck?: string[] | null;
  load?: HostLoad;
}

/** HostLoad is a host's measured load over its agent's last sampling interval. */
export interface HostLoad {
  time?: string;
  cpuBusy?: number;
  memoryUsedMiB?: number;
  vms?: Record<string, { cpuBusy?: number; memoryMiB?: number }> | null;
}

/** ClusterSettings are the cluster-wide HA admission and balancer settings. */
export interface ClusterSettings {
  haAdmission?: string;
  hostFailures?: number;
  balance?: string;
  balanceThreshold?: number;
}

/** BalanceMove is one live migration of a balance plan. */
export interface BalanceMove {
  vm: string;
  from: string;
  to: string;
  mirror?: boolean;
  reason?: string;
  error?: string;
}

/** BalancePlan is the load balancer's plan (or what it carried out). */
export interface BalancePlan {
  threshold?: number;
  before?: number;
  after?: number;
  balanced?: boolean;
  why?: string;
  moves?: BalanceMove[] | null;
  loads?: { host: string; before?: number; after?: number }[] | null;
}

/** Volume is a disk image in a storage pool. */
export interface Volume {
  name: string;
  pool?: string;
  path?: string;
  format?: string;
  virtualSize?: number;
  actualSize?: number;
  usedBy?: string[] | null;
  /** set while the agent still converts an import or copy */
  progress?: { doneBytes?: number; totalBytes?: number };
}

/** VolumeCreate asks for an empty volume (size) or an imported one (from, fromVolume). */
export interface VolumeCreate {
  name: string;
  format?: string;
  size?: string;
  from?: string;
  fromVolume?: string;
}

export interface Network {
  name: string;
  kind?: string;
  bridge?: string;
  cidr?: string;
  usedBy?: string[] | null;
}

export interface Pool {
  name: string;
  kind?: string;
  path: string;
  host?: string;
  shared?: boolean;
  capacityBytes?: number;
  freeBytes?: number;
}

export interface Snapshot {
  name: string;
  path?: string;
  created?: string;
  sizeBytes?: number;
}

export interface UsageSample {
  time: string;
  host?: string;
  vm?: string;
  state?: string;
  vcpus?: number;
  memoryBytes?: number;
  cpuSeconds?: number;
  rssBytes?: number;
  hasIO?: boolean;
  diskReadBytes?: number;
  diskWriteBytes?: number;
  netRxBytes?: number;
  netTxBytes?: number;
}

export interface UsageReport {
  host?: string;
  from?: string;
  to?: string;
  intervalSeconds?: number;
  stepSeconds?: number;
  samples?: UsageSample[] | null;
}

/** ClusterEvent is a decision or host change of the cluster, with its reason. */
export interface ClusterEvent {
  time: string;
  kind: string;
  host?: string;
  from?: string;
  vm?: string;
  reason: string;
  by?: string;
}

/** VMEvent is one event of GET /v1/events (type cluster: a ClusterEvent). */
export interface VMEvent {
  type: string;
  vm: string;
  revision?: number;
  desired?: string;
  spec?: VMSpec;
  status?: VMStatus;
  cluster?: ClusterEvent;
}
