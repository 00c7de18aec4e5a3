// Package service declares the agent's operations per resource (VMs,
// networks, pools and volumes, snapshots, disk hotplug, migrations, hosts)
// as plain Go methods over api types, and the typed errors they return.
// The HTTP API, the cluster controllers and the console all call the same
// operations through these interfaces; the agent implements them with a
// small type per resource (agent.Agent.Services composes them).
package service

import (
	"context"
	"io"
	"net"

	"github.com/govisor/govisor/api"
)

// Services is every operation of a host agent.
type Services interface {
	VMs
	Disks
	Snapshots
	Migrations
	Networks
	Pools
	Hosts
}

// Apply results: what ApplyVM did with the definition.
const (
	Created   = "created"
	Updated   = "updated"
	Unchanged = "unchanged"
)

// Action asks for a power action on a VM.
type Action struct {
	Name   string
	Action string // start, stop, force-stop, restart, reboot, pause or resume
	// Wait is how long the call may wait for the action to take effect
	// (a Go duration, up to 10m; empty: answer at once).
	Wait string
}

// CreateOptions say where a new VM runs and whether it starts.
type CreateOptions struct {
	NoStart bool
	// Host is the host the VM is for: empty for the host of the agent
	// asked, PlaceAuto for the one the cluster's placement picks (filter,
	// score, select), or a host's name (refused with the host's reasons
	// when it cannot take the VM).
	Host string
}

// PlaceAuto as CreateOptions.Host lets placement pick the host.
const PlaceAuto = "auto"

// VMs are the VM operations.
type VMs interface {
	// CreateVM defines a VM on the host opts name (this host by default,
	// or where placement puts it), started unless opts say not to.
	CreateVM(ctx context.Context, s api.VMSpec, opts CreateOptions) (api.VM, error)
	// ApplyVM creates the VM or replaces its definition, keeping its power
	// state; it says whether it was Created, Updated or Unchanged.
	ApplyVM(ctx context.Context, name string, s api.VMSpec) (api.VM, string, error)
	// ListVMs lists every VM of the cluster.
	ListVMs(ctx context.Context) (api.VMList, error)
	// GetVM reads one VM.
	GetVM(ctx context.Context, name string) (api.VM, error)
	// DeleteVM forgets a stopped VM and removes its files on this host.
	DeleteVM(ctx context.Context, name string) error
	// Act changes a VM's power state; reached says whether it took effect
	// within the action's wait.
	Act(ctx context.Context, a Action) (v api.VM, reached bool, err error)
	// ConsoleLog opens the last MiB of a VM's console output (nil when
	// the VM never started).
	ConsoleLog(ctx context.Context, name string) (io.ReadCloser, error)
	// AttachConsole connects to a running VM's serial console.
	AttachConsole(ctx context.Context, name string) (net.Conn, error)
}

// Disks are the disk hotplug operations.
type Disks interface {
	// AttachDisk adds a disk to a VM, plugging it into a running guest.
	AttachDisk(ctx context.Context, name string, d api.DiskSpec) (api.VM, error)
	// DetachDisk removes disk index (as given by the user) from a VM,
	// ejecting it from a running guest.
	DetachDisk(ctx context.Context, name, index string) (api.VM, error)
}

// Snapshots are the snapshot operations.
type Snapshots interface {
	// Snapshot saves a running or paused VM.
	Snapshot(ctx context.Context, name string, req api.SnapshotRequest) (api.Snapshot, error)
	// ListSnapshots lists a VM's snapshots, oldest first.
	ListSnapshots(ctx context.Context, name string) (api.SnapshotList, error)
	// Restore resumes a VM from a snapshot; wait as in Action.
	Restore(ctx context.Context, name, wait string, req api.RestoreRequest) (v api.VM, reached bool, err error)
}

// Migrations are the live migration operations.
type Migrations interface {
	// Migrate moves a running VM of this host to another host live.
	Migrate(ctx context.Context, name string, req api.MigrateRequest) (api.VM, error)
	// RequestMigration records a live migration of a VM to req.Host and
	// returns at once; the agent of the VM's host carries it out. by names
	// the caller (a controller) in the record.
	RequestMigration(ctx context.Context, name string, req api.MigrateRequest, by string) error
	// CancelMigrate stops a running migration; the VM stays here.
	CancelMigrate(ctx context.Context, name string) (api.VM, error)
	// Incoming starts the destination VMM of a migration to this host.
	Incoming(ctx context.Context, name string, req api.IncomingRequest) (api.Incoming, error)
	// CancelIncoming removes the destination VMM of a migration.
	CancelIncoming(ctx context.Context, name string) error
	// IncomingState says whether a migration of VM name reached this host.
	IncomingState(ctx context.Context, name string) (api.Incoming, error)
}

// Networks are the network operations.
type Networks interface {
	// CreateNetwork defines a network and makes its bridge on this host.
	CreateNetwork(ctx context.Context, n api.Network) (api.Network, error)
	// ListNetworks lists the networks with the VMs that use them.
	ListNetworks(ctx context.Context) (api.NetworkList, error)
	// GetNetwork reads one network.
	GetNetwork(ctx context.Context, name string) (api.Network, error)
	// DeleteNetwork forgets an unused network and removes its bridge here.
	DeleteNetwork(ctx context.Context, name string) error
}

// Pools are the storage pool and volume operations.
type Pools interface {
	// CreatePool defines a storage pool.
	CreatePool(ctx context.Context, p api.Pool) (api.Pool, error)
	// ListPools lists the storage pools.
	ListPools(ctx context.Context) (api.PoolList, error)
	// GetPool reads one storage pool.
	GetPool(ctx context.Context, name string) (api.Pool, error)
	// DeletePool forgets a storage pool no VM uses; its files stay.
	DeletePool(ctx context.Context, name string) error
	// ListVolumes lists the volumes of a pool on this host.
	ListVolumes(ctx context.Context, pool string) (api.VolumeList, error)
	// CreateVolume makes a volume in a pool on this host.
	CreateVolume(ctx context.Context, pool string, c api.VolumeCreate) (api.Volume, error)
	// GetVolume reads one volume.
	GetVolume(ctx context.Context, pool, name string) (api.Volume, error)
	// DeleteVolume removes a volume no VM uses.
	DeleteVolume(ctx context.Context, pool, name string) error
	// ImportVM converts a VM of another hypervisor into volumes of a pool
	// on this host and describes it.
	ImportVM(ctx context.Context, pool string, r api.ImportRequest) (api.ImportResult, error)
}

// UsageQuery selects utilization samples; its fields are as given by the
// user (RFC 3339 times, a VM name, a Go duration), empty for the defaults.
type UsageQuery struct {
	From, To, VM, Step string
}

// Hosts are the host-wide operations.
type Hosts interface {
	// Host describes this host.
	Host(ctx context.Context) (api.Host, error)
	// Hosts lists the cluster's hosts.
	Hosts(ctx context.Context) (api.HostList, error)
	// SetMaintenance asks for host to enter (on) or leave maintenance
	// mode; the cluster's leader evacuates it.
	SetMaintenance(ctx context.Context, host string, on bool) (api.Host, error)
	// Settings reads the cluster-wide settings; PutSettings replaces them.
	Settings(ctx context.Context) (api.ClusterSettings, error)
	PutSettings(ctx context.Context, cs api.ClusterSettings) (api.ClusterSettings, error)
	// ClusterEvents returns the newest limit cluster events (0: all kept).
	ClusterEvents(ctx context.Context, limit int) ([]api.ClusterEvent, error)
	// AddMember lets a host join the cluster: its embedded etcd becomes
	// a member while the cluster has fewer than three, else it is a client.
	AddMember(ctx context.Context, req api.JoinRequest) (api.JoinInfo, error)
	// BalancePlan is the load balancer's plan now; Balance plans and
	// carries it out, answering once every migration ended.
	BalancePlan(ctx context.Context) (api.BalancePlan, error)
	Balance(ctx context.Context) (api.BalancePlan, error)
	// Events streams VM changes after revision since until ctx ends.
	Events(ctx context.Context, since int64) <-chan api.Event
	// Usage reports this host's utilization samples.
	Usage(ctx context.Context, q UsageQuery) (api.UsageReport, error)
}
