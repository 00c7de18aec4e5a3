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
  state?: string;
  leader?: boolean;
  stuck?: string[] | null;
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
}

export interface UsageReport {
  host?: string;
  intervalSeconds?: number;
  samples?: UsageSample[] | null;
}

/** VMEvent is one event of GET /v1/events. */
export interface VMEvent {
  type: string;
  vm: string;
  revision?: number;
  desired?: string;
  status?: VMStatus;
}
