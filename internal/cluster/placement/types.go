// Package placement decides which host runs a VM: a pure filter -> score
// -> select pipeline over a snapshot of the cluster (the shape of Nomad's
// scheduler), with no etcd, KVM or agent behind it so that it tests
// anywhere and fast.
//
// Filters (each names its reason per rejected host): host state (only
// ready hosts), capacity (vCPUs and memory, with overcommit ratios),
// storage reachable (a dir pool lives on one host, a shared pool on all),
// CPU features and vendor, VM-host rules on host labels, and VM-VM
// affinity and anti-affinity groups. Scorers: spread (the least loaded host
// after placement, by its binding dimension) or pack (the most loaded one
// that fits), after the soft VM-host preferences; ties go to the host name
// that sorts first, so that a placement is deterministic.
//
// A State holds the snapshot and the allocations; placing a VM updates
// them, so that a batch (the HA VMs of a dead host, a host's evacuation)
// sees each earlier placement. A State is not safe for concurrent use;
// Clone it for what-if questions (admission control).
package placement

// HostState is a host's state as the cluster sees it.
type HostState string

// Host states; only ready hosts take VMs.
const (
	HostReady               HostState = "ready"
	HostEnteringMaintenance HostState = "entering-maintenance" // being evacuated
	HostMaintenance         HostState = "maintenance"
	HostUnreachable         HostState = "unreachable" // its lease expired
	HostFenced              HostState = "fenced"      // its HA VMs were stopped, restarted elsewhere
)

// CPU describes a host's processor: its vendor ("GenuineIntel",
// "AuthenticAMD"), its model name, and its feature flags (as
// /proc/cpuinfo names them: "avx2", "sse4_2").
type CPU struct {
	Vendor   string
	Model    string
	Features []string
}

// Host is one host of the cluster snapshot.
type Host struct {
	Name  string
	State HostState
	// CPUs and MemoryMiB are the host's schedulable capacity, before
	// overcommit (what the host offers VMs, its own reserve taken off).
	CPUs      int
	MemoryMiB uint64
	// Labels are the host's labels, matched by VM-host rules.
	Labels map[string]string
	CPU    CPU
}

// Pool is a storage pool as placement sees it: a shared pool is reachable
// from every host, a dir pool only from its Host.
type Pool struct {
	Name   string
	Shared bool
	Host   string // the host of a dir pool
}

// RuleKind says how a VM-host rule binds.
type RuleKind string

// VM-host rule kinds: must and must-not are hard (filters), should and
// should-not are preferences (they score).
const (
	Must      RuleKind = "must"
	MustNot   RuleKind = "must-not"
	Should    RuleKind = "should"
	ShouldNot RuleKind = "should-not"
)

// HostRule is a VM-host rule: the VM must (not) or should (not) run on
// hosts whose labels match Selector (see ParseSelector).
type HostRule struct {
	Kind     RuleKind
	Selector string
}

// VM is a VM as placement sees it.
type VM struct {
	Name string
	// Host is where the VM runs (or is meant to run); empty: nowhere yet.
	Host      string
	CPUs      int
	MemoryMiB uint64
	// Pools are the storage pools of the VM's disks.
	Pools []string
	// MirrorDisks says the VM's disks move with it (live migration with
	// disk mirroring), so a target need not reach its pools.
	MirrorDisks bool
	HostRules   []HostRule
	// Affinity names groups whose members must all run on one host;
	// AntiAffinity names groups whose members must all run on different
	// hosts.
	Affinity     []string
	AntiAffinity []string
	// CPUVendor (if set) and CPUFeatures are what the VM's CPU model
	// needs from a host.
	CPUVendor   string
	CPUFeatures []string
	// HA VMs are restarted elsewhere when their host dies, by Priority,
	// highest first.
	HA       bool
	Priority int
}

// Strategy chooses among the hosts that fit.
type Strategy string

// Strategies.
const (
	Spread Strategy = "spread" // the least loaded host after placement (the default)
	Pack   Strategy = "pack"   // the most loaded host that fits
)

// Default overcommit ratios, as OpenStack's initial allocation ratios:
// vCPUs are time-shared, memory is not.
const (
	DefaultCPUOvercommit    = 4.0
	DefaultMemoryOvercommit = 1.0
)

// Config tunes placement; the zero value is spread with the default
// overcommit ratios.
type Config struct {
	Strategy Strategy
	// CPUOvercommit is how many vCPUs a host CPU may carry;
	// MemoryOvercommit how many MiB of VM memory a MiB of host memory may
	// carry. Zero: the default.
	CPUOvercommit    float64
	MemoryOvercommit float64
}

// Cluster is the snapshot a State starts from. VMs are the VMs that hold
// capacity (running, or meant to run) on their Host; a VM without a Host
// holds nothing and is left out.
type Cluster struct {
	Hosts []Host
	Pools []Pool
	VMs   []VM
}

// Placement is one VM placed on a host.
type Placement struct {
	VM   string
	Host string
}
