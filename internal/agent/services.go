package agent

import (
	"context"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/agent/service"
)

// services composes the agent's per-resource services into every
// operation of package service: the value the HTTP API (package httpapi),
// the controllers and the console hold. Each interface is served by one
// small type holding only what it needs; live migrations are still the
// Agent's own (migrate*.go, incoming.go).
type services struct {
	service.VMs
	service.Disks
	service.Snapshots
	service.Migrations
	service.Networks
	service.Pools
	hostOps // service.Hosts (embedded as is, its Hosts method would be hidden by the field's name)
}

// clusterOps is the part of service.Hosts that the Agent implements
// itself: the cluster's settings and load balancing (place.go), its
// events (leader.go) and this host's utilization samples (usage.go).
type clusterOps interface {
	Settings(ctx context.Context) (api.ClusterSettings, error)
	PutSettings(ctx context.Context, cs api.ClusterSettings) (api.ClusterSettings, error)
	ClusterEvents(ctx context.Context, limit int) ([]api.ClusterEvent, error)
	BalancePlan(ctx context.Context) (api.BalancePlan, error)
	Balance(ctx context.Context) (api.BalancePlan, error)
	Usage(ctx context.Context, q service.UsageQuery) (api.UsageReport, error)
}

// hostOps is service.Hosts: the host service and the Agent's cluster
// operations.
type hostOps struct {
	*hostService
	clusterOps
}

var _ service.Hosts = hostOps{}

// newServices makes the services over a's store and node (set by New).
func (a *Agent) newServices() {
	a.peers = newPeerClients(a.st, a.cfg)
	a.vms = &vmService{vmAccess: a.vmAccess, hostMiB: a.hostMiB, place: a, peers: a.peers}
	a.disks = &diskService{vmAccess: a.vmAccess, hostMiB: a.hostMiB}
	a.snaps = &snapshotService{vmAccess: a.vmAccess}
	a.nets = &networkService{st: a.st, node: a.node, log: a.log}
	a.pools = &poolService{st: a.st, host: a.cfg.HostName, log: a.log}
	a.hosts = &hostService{st: a.st, host: a.cfg.HostName, info: a.hostInfo, event: a.event}
}

// Services is every operation of this agent, over its services.
func (a *Agent) Services() service.Services {
	return services{VMs: a.vms, Disks: a.disks, Snapshots: a.snaps, Migrations: a, Networks: a.nets, Pools: a.pools,
		hostOps: hostOps{hostService: a.hosts, clusterOps: a}}
}

// The Agent's migration and leader code calls these on the Agent; each
// is the service's that owns it.

// peer returns a client for the agent of host (peerClients.peer).
func (a *Agent) peer(ctx context.Context, host string) (*client.Client, error) {
	return a.peers.peer(ctx, host)
}

// sharedStorage reports whether every disk of s is in a shared pool
// (poolService.sharedStorage).
func (a *Agent) sharedStorage(ctx context.Context, s api.VMSpec) (bool, error) {
	return a.pools.sharedStorage(ctx, s)
}

// Hosts lists the cluster's hosts (hostService.Hosts).
func (a *Agent) Hosts(ctx context.Context) (api.HostList, error) { return a.hosts.Hosts(ctx) }
