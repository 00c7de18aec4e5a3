// Package api holds the public types of the govisor REST API (see
// openapi.yaml beside this file): the JSON bodies of requests, responses,
// events and errors. The CLI, the typed client and the agent share them.
package api

import "time"

// Version is the REST API version prefix.
const Version = "v1"

// Boot modes a VM definition accepts.
const (
	BootLinux64 = "linux64" // the Linux 64-bit boot protocol (bzImage or vmlinux)
	BootPVH     = "pvh"     // the PVH entry point (Xen ELF note)
)

// Restart policies: what the agent does when a VM's VMM process exits on its own.
const (
	RestartNever     = "never"      // leave it stopped
	RestartOnFailure = "on-failure" // start it again after a non-zero exit
	RestartAlways    = "always"     // start it again after any exit
)

// HA restart priorities (VMSpec.RestartPriority).
const (
	PriorityHigh   = "high"
	PriorityMedium = "medium"
	PriorityLow    = "low"
)

// PriorityRank orders restart priorities: high 3, medium (or empty) 2,
// low 1, anything else 0.
func PriorityRank(p string) int {
	switch p {
	case PriorityHigh:
		return 3
	case PriorityMedium, "":
		return 2
	case PriorityLow:
		return 1
	}
	return 0
}

// Power is a VM's desired power state.
type Power string

// Desired power states.
const (
	PowerRunning Power = "running"
	PowerStopped Power = "stopped"
)

// State is a VM's observed state, as its host agent reports it.
type State string

// Observed states.
const (
	StatePending  State = "pending"  // defined, no agent has acted on it yet
	StateRunning  State = "running"  // its VMM process is alive
	StatePaused   State = "paused"   // its VMM process is alive, the guest's vCPUs are paused
	StateStopping State = "stopping" // the agent asked the VMM to stop
	StateStopped  State = "stopped"  // no VMM process; ended normally or on request
	StateFailed   State = "failed"   // no VMM process; it failed and is not restarted
)

// States lists every observed state (for metrics with a zero for each).
var States = []State{StatePending, StateRunning, StatePaused, StateStopping, StateStopped, StateFailed}

// VMSpec.Firmware values: SeaBIOS, and OVMF (UEFI).
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// The CPU models of VMSpec.CPU.
const (
	CPUBaseline = "baseline"
	CPUHost     = "host"
)

// VMSpec is a VM definition: what a user writes in vm.yaml.
type VMSpec struct {
	Name          string `json:"name"`
	CPUs          int    `json:"cpus,omitempty"`
	Memory        string `json:"memory,omitempty"`
	Kernel        string `json:"kernel,omitempty"`
	Initrd        string `json:"initrd,omitempty"`
	Cmdline       string `json:"cmdline,omitempty"`
	Boot          string `json:"boot,omitempty"`
	DebugExit     bool   `json:"debugExit,omitempty"`
	RestartPolicy string `json:"restartPolicy,omitempty"`
	// Firmware boots the first disk's own boot loader instead of Kernel:
	// "bios" (SeaBIOS) or "uefi" (OVMF, with the VM's UEFI variables kept
	// in its folder), as a VM imported from another hypervisor needs.
	Firmware string `json:"firmware,omitempty"`
	// UUID is the machine's UUID, which a firmware guest reads through
	// SMBIOS (/sys/class/dmi/id/product_uuid); the agent gives a VM a
	// random one when it is created without, and keeps it when a
	// definition replacing the VM's leaves it out.
	UUID string `json:"uuid,omitempty"`
	// Disks are virtio-blk disks, in order (vda, vdb, ...).
	Disks []DiskSpec `json:"disks,omitempty"`
	// RNG adds a virtio-rng device.
	RNG bool `json:"rng,omitempty"`
	// Balloon adds a virtio-balloon device.
	Balloon bool `json:"balloon,omitempty"`
	// NICs are virtio-net interfaces, each on a network (see NICSpec).
	NICs []NICSpec `json:"nics,omitempty"`
	// HA restarts the VM on another host when its host dies (its host
	// agent's etcd lease expires). Its VMM self-fences: it stops the guest
	// before the lease can expire unless the agent confirms the lease.
	HA bool `json:"ha,omitempty"`
	// RestartPriority orders HA restarts after a host failure: high, then
	// medium (the default), then low.
	RestartPriority string `json:"restartPriority,omitempty"`
	// Affinity names groups whose members must run on one host;
	// AntiAffinity groups whose members must run on different hosts.
	// Placement, HA restarts and balancing keep them.
	Affinity     []string `json:"affinity,omitempty"`
	AntiAffinity []string `json:"antiAffinity,omitempty"`
	// HostRules bind the VM to hosts by their labels: "must zone=a",
	// "must-not gpu", "should ssd" or "should-not rack=r1" (comma-separated
	// terms key, !key, key=value, key!=value).
	HostRules []string `json:"hostRules,omitempty"`
	// CPU is the processor the guest sees: "baseline" (the default) offers
	// the features every host of the cluster has, so the VM can move to
	// any of them; "host" offers all of its first host's, and the VM can
	// then move only to hosts that have them too.
	CPU string `json:"cpu,omitempty"`
	// StopTimeout is how long a stop waits for the guest to shut down after
	// the ACPI power button before the VMM is terminated (a Go duration such
	// as "30s"; empty: the agent's default).
	StopTimeout string `json:"stopTimeout,omitempty"`
}

// DiskSpec is one disk of a VM: an image file on the host, given by Path
// or as Volume of Pool (the agent fills in Path).
type DiskSpec struct {
	Path     string `json:"path"`
	Pool     string `json:"pool,omitempty"`
	Volume   string `json:"volume,omitempty"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	Format   string `json:"format,omitempty"` // raw, qcow2, vmdk, vhd, vhdx; empty: probe
}

// VMStatus is the observed state of a VM, written only by its host agent.
type VMStatus struct {
	State      State     `json:"state"`
	Host       string    `json:"host,omitempty"`
	PID        int       `json:"pid,omitempty"`
	StartTicks uint64    `json:"startTicks,omitempty"` // /proc/<pid>/stat starttime, guards against pid reuse
	Since      time.Time `json:"since"`
	ExitReason string    `json:"exitReason,omitempty"`
	ExitCode   *int      `json:"exitCode,omitempty"`
	Restarts   int       `json:"restarts"`
	// CPUFeatures are the CPU features (as /proc/cpuinfo names them) the
	// guest was started with: any host it moves to must have them.
	CPUFeatures []string `json:"cpuFeatures,omitempty"`
	// Migration is the live migration under way (or the last one to fail).
	Migration *MigrationStatus `json:"migration,omitempty"`
}

// VM is a VM as the API returns it: its definition, desired power state and
// observed status.
type VM struct {
	Spec    VMSpec   `json:"spec"`
	Desired Power    `json:"desired"`
	Host    string   `json:"host"`
	Status  VMStatus `json:"status"`
}

// VMList is the body of GET /v1/vms.
type VMList struct {
	Items []VM `json:"items"`
}

// Host describes the host an agent runs on (GET /v1/host).
type Host struct {
	Name         string    `json:"name"`
	AgentID      string    `json:"agentId"`
	Version      string    `json:"version"`
	CPUs         int       `json:"cpus"`
	MemoryMiB    uint64    `json:"memoryMiB"`
	AllocatedMiB uint64    `json:"allocatedMiB"`
	VMs          int       `json:"vms"`
	RunningVMs   int       `json:"runningVMs"`
	Store        string    `json:"store"` // "embedded" or "external"
	Started      time.Time `json:"started"`
	// API lists where the agent's REST API is served (unix:PATH, tcp:HOST:PORT),
	// so that peers can reach it (live migration).
	API []string `json:"api,omitempty"`
	// CPUVendor, CPUModel and CPUFeatures are the host's processor as Linux
	// reports it (/proc/cpuinfo): the cluster's CPU baseline is made of them.
	CPUVendor   string   `json:"cpuVendor,omitempty"`
	CPUModel    string   `json:"cpuModel,omitempty"`
	CPUFeatures []string `json:"cpuFeatures,omitempty"`
	// Labels are the host's labels (govisor serve --label), which VMs'
	// host rules match.
	Labels map[string]string `json:"labels,omitempty"`
	// State is the host's state in the cluster (in GET /v1/hosts):
	// HostReady while its agent's lease lives, HostUnreachable once it
	// expired (listed while VMs still name the host).
	State string `json:"state,omitempty"`
	// Leader is set on the host whose agent leads the cluster (runs the
	// HA controller).
	Leader bool `json:"leader,omitempty"`
	// Stuck lists the VMs that cannot leave a host entering maintenance,
	// each "VM: reason".
	Stuck []string `json:"stuck,omitempty"`
	// Load is the host's measured load (in the host list), as its agent
	// last published it.
	Load *HostLoad `json:"load,omitempty"`
}

// HostLoad is a host's measured load over its agent's last sampling
// interval: what the cluster's load balancer reads.
type HostLoad struct {
	Time          time.Time `json:"time"`
	CPUBusy       float64   `json:"cpuBusy"`       // CPUs kept busy (1.5: one and a half)
	MemoryUsedMiB uint64    `json:"memoryUsedMiB"` // memory in use
	// VMs are the loads of the host's running VMs, by name.
	VMs map[string]VMLoad `json:"vms,omitempty"`
}

// VMLoad is one VM's measured load, from its VMM process's counters.
type VMLoad struct {
	CPUBusy   float64 `json:"cpuBusy"`   // CPUs its VMM kept busy
	MemoryMiB uint64  `json:"memoryMiB"` // resident memory of its VMM
}

// Host states (Host.State).
const (
	HostReady       = "ready"
	HostUnreachable = "unreachable"
	// HostEnteringMaintenance: maintenance was asked for and VMs still run
	// there (being live-migrated away, or stuck); HostMaintenance: none
	// runs there. Neither takes new VMs.
	HostEnteringMaintenance = "entering-maintenance"
	HostMaintenance         = "maintenance"
)

// HostStates lists every host state (for metrics with a zero for each).
var HostStates = []string{HostReady, HostUnreachable, HostEnteringMaintenance, HostMaintenance}

// MaintenanceRequest is the body of PUT /v1/hosts/{name}/maintenance.
type MaintenanceRequest struct {
	// Maintenance enters (true) or leaves (false) maintenance mode.
	Maintenance bool `json:"maintenance"`
}

// JoinRequest is the body of POST /v1/cluster/members: a host asks to join
// the cluster (govisor serve --join).
type JoinRequest struct {
	// Name is the joining host's etcd member name (its host name).
	Name string `json:"name"`
	// PeerURL is the http://IP:PORT its etcd member will listen on for
	// the other members.
	PeerURL string `json:"peerURL"`
}

// JoinInfo is the answer to a JoinRequest: how the host's agent reaches
// the cluster's etcd.
type JoinInfo struct {
	// Member says the host's embedded etcd was added as a member (a
	// learner, promoted once it caught up): it starts with InitialCluster.
	// Otherwise the cluster has its members and the host is their client.
	Member bool `json:"member"`
	// InitialCluster is every member's NAME=PEER-URL, the joining one too.
	InitialCluster string `json:"initialCluster,omitempty"`
	// Endpoints are the members' client URLs.
	Endpoints []string `json:"endpoints"`
}

// HostList is the body of GET /v1/hosts: the hosts whose agents are alive.
type HostList struct {
	Items []Host `json:"items"`
}

// Event is one state change from GET /v1/events (a server-sent event whose
// data is this JSON object).
type Event struct {
	Type     string    `json:"type"` // "spec", "status", "deleted" or "cluster"
	VM       string    `json:"vm"`
	Revision int64     `json:"revision"`
	Spec     *VMSpec   `json:"spec,omitempty"`
	Desired  Power     `json:"desired,omitempty"`
	Status   *VMStatus `json:"status,omitempty"`
	// Cluster is a decision of the cluster or a change of a host (type
	// "cluster").
	Cluster *ClusterEvent `json:"cluster,omitempty"`
}

// ClusterEvent is a decision of the cluster's controllers, or a change of
// a host's state, with its reason.
type ClusterEvent struct {
	Time time.Time `json:"time"`
	// Kind is one of the ClusterEvent kinds (EventHARestart, ...).
	Kind string `json:"kind"`
	// Host is the host the event is about (where a VM went, or the host
	// whose state changed); From the host a VM left.
	Host   string `json:"host,omitempty"`
	From   string `json:"from,omitempty"`
	VM     string `json:"vm,omitempty"`
	Reason string `json:"reason"`
	// By names the agent that decided (the cluster's leader, mostly).
	By string `json:"by,omitempty"`
}

// ClusterEventList is the body of GET /v1/cluster/events: the newest
// cluster events kept, oldest first.
type ClusterEventList struct {
	Items []ClusterEvent `json:"items"`
}

// ClusterEvent kinds.
const (
	EventHARestart   = "ha-restart"  // an HA VM of a dead host was placed on another
	EventHAWaiting   = "ha-waiting"  // an HA VM of a dead host fits on no host now
	EventHostState   = "host-state"  // a host's state changed (ready, unreachable, maintenance)
	EventEvacuation  = "evacuation"  // a VM was live-migrated off a host entering maintenance
	EventBalance     = "balance"     // the load balancer live-migrated a VM
	EventHostJoined  = "host-joined" // a host asked to join the cluster
	EventMaintenance = "maintenance" // maintenance was asked for a host, or ended
)

// Error is the body of every 4xx and 5xx response.
type Error struct {
	Message string `json:"error"`
	Field   string `json:"field,omitempty"` // the offending field of the request, when there is one
}

// ClusterSettings are the cluster-wide settings (GET and PUT
// /v1/cluster/settings).
type ClusterSettings struct {
	// HAAdmission is what a VM start does when it would leave too little
	// capacity to restart the HA VMs of the largest host(s) elsewhere:
	// AdmissionOff (the default: no check), AdmissionWarn (start it, with
	// a warning) or AdmissionRefuse (refuse it with the reason).
	HAAdmission string `json:"haAdmission,omitempty"`
	// HostFailures is how many hosts may fail at once for admission (the
	// largest ones; default 1).
	HostFailures int `json:"hostFailures,omitempty"`
	// Balance is the load balancer's mode: BalanceOff (the default),
	// BalanceManual (plans on request: govisor cluster balance) or
	// BalanceAutomatic (the leader applies a plan every 30 s).
	Balance string `json:"balance,omitempty"`
	// BalanceThreshold is the band: hosts whose loads (the larger of CPU
	// and memory, 0 to 1) differ by at most this much are balanced
	// (default 0.15).
	BalanceThreshold float64 `json:"balanceThreshold,omitempty"`
}

// Load balancer modes (ClusterSettings.Balance).
const (
	BalanceOff       = "off"
	BalanceManual    = "manual"
	BalanceAutomatic = "automatic"
)

// BalancePlan is the load balancer's plan (GET and POST /v1/cluster/balance).
type BalancePlan struct {
	Threshold float64 `json:"threshold"`
	// Before and After are the imbalance: the most loaded ready host's
	// load minus the least loaded one's.
	Before   float64       `json:"before"`
	After    float64       `json:"after"`
	Balanced bool          `json:"balanced"`
	Why      string        `json:"why,omitempty"` // why the plan stops short of the band
	Moves    []BalanceMove `json:"moves,omitempty"`
	Loads    []BalanceLoad `json:"loads,omitempty"`
}

// BalanceMove is one live migration of a plan.
type BalanceMove struct {
	VM     string `json:"vm"`
	From   string `json:"from"`
	To     string `json:"to"`
	Mirror bool   `json:"mirror,omitempty"` // its local disks are mirrored
	Reason string `json:"reason"`
	Error  string `json:"error,omitempty"` // when applied: why it failed
}

// BalanceLoad is a host's load before and after a plan.
type BalanceLoad struct {
	Host   string  `json:"host"`
	Before float64 `json:"before"`
	After  float64 `json:"after"`
}

// HA admission control policies (ClusterSettings.HAAdmission).
const (
	AdmissionOff    = "off"
	AdmissionWarn   = "warn"
	AdmissionRefuse = "refuse"
)
