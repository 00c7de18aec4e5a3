package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
	"github.com/govisor/govisor/internal/cluster/store"
)

// hostService implements the host and cluster membership part of
// service.Hosts: this host, the cluster's hosts, maintenance mode and
// joins. The rest of service.Hosts is the agent's own (see hostOps).
type hostService struct {
	st    *store.Store
	host  string                 // this host's name in etcd
	info  func() api.Host        // this host as the agent describes it (without its VMs)
	event func(api.ClusterEvent) // records a cluster event (leader.go)
}

// Host describes this host, with its VMs and allocations.
func (svc *hostService) Host(ctx context.Context) (api.Host, error) {
	recs, _, err := svc.st.ListVMs(ctx)
	if err != nil {
		return api.Host{}, err
	}
	h := svc.info()
	for _, rec := range recs {
		if rec.Desired.Host != h.Name {
			continue
		}
		h.VMs++
		if rec.Status != nil && rec.Status.State == api.StateRunning {
			h.RunningVMs++
		}
		if rec.Desired.Power == api.PowerRunning {
			mib, _ := api.ParseMemoryMiB(rec.Desired.Spec.Memory)
			h.AllocatedMiB += mib
		}
	}
	return h, nil
}

// Hosts lists the cluster's hosts: those with a live agent (ready), then
// those VMs still name whose lease expired (unreachable), each with the
// VMs assigned to it and their memory.
func (svc *hostService) Hosts(ctx context.Context) (api.HostList, error) {
	hs, err := svc.st.Hosts(ctx)
	if err != nil {
		return api.HostList{}, err
	}
	recs, _, err := svc.st.ListVMs(ctx)
	if err != nil {
		return api.HostList{}, err
	}
	confs, err := svc.st.HostConfigs(ctx)
	if err != nil {
		return api.HostList{}, err
	}
	loads, err := svc.st.Loads(ctx)
	if err != nil {
		return api.HostList{}, err
	}
	leader, _ := svc.st.Leader(ctx) // unknown leader: no host is marked
	list := api.HostList{Items: []api.Host{}}
	index := map[string]int{}
	for _, h := range hs {
		h.State, h.Leader = api.HostReady, h.Name == leader
		if l, ok := loads[h.Name]; ok {
			h.Load = &l
		}
		index[h.Name] = len(list.Items)
		list.Items = append(list.Items, h)
	}
	running := map[string]bool{}
	for _, r := range recs {
		name := r.Desired.Host
		if name == "" {
			continue
		}
		i, ok := index[name]
		if !ok {
			index[name] = len(list.Items)
			i = len(list.Items)
			list.Items = append(list.Items, api.Host{Name: name, State: api.HostUnreachable})
		}
		h := &list.Items[i]
		h.VMs++
		if r.Status != nil && r.Status.State == api.StateRunning && r.Status.Host == name {
			h.RunningVMs++
		}
		if r.Desired.Power == api.PowerRunning {
			mib, _ := api.ParseMemoryMiB(r.Desired.Spec.Memory)
			h.AllocatedMiB += mib
			running[name] = true
		}
	}
	for i := range list.Items {
		h := &list.Items[i]
		if c := confs[h.Name]; c.Maintenance && h.State == api.HostReady {
			h.State, h.Stuck = api.HostMaintenance, c.Stuck
			if running[h.Name] {
				h.State = api.HostEnteringMaintenance
			}
		}
	}
	return list, nil
}

// SetMaintenance asks for host to enter or leave maintenance mode; the
// leader's maintenance controller evacuates it.
func (svc *hostService) SetMaintenance(ctx context.Context, host string, on bool) (api.Host, error) {
	list, err := svc.Hosts(ctx)
	if err != nil {
		return api.Host{}, err
	}
	i := slices.IndexFunc(list.Items, func(h api.Host) bool { return h.Name == host })
	if i < 0 {
		return api.Host{}, fmt.Errorf("%w: %q is not in the cluster (see govisor host list)", service.ErrNoSuchHost, host)
	}
	if on && list.Items[i].State == api.HostUnreachable {
		return api.Host{}, fmt.Errorf("%w: host %s is unreachable: its VMs cannot be live-migrated (HA restarts its HA VMs elsewhere)", service.ErrInvalid, host)
	}
	if err := svc.st.SetMaintenance(ctx, host, on); err != nil {
		return api.Host{}, err
	}
	why := fmt.Sprintf("maintenance asked for host %s: its VMs are live-migrated away and it takes no new ones", host)
	if !on {
		why = fmt.Sprintf("host %s leaves maintenance: it takes VMs again", host)
	}
	svc.event(api.ClusterEvent{Kind: api.EventMaintenance, Host: host, Reason: why})
	if list, err = svc.Hosts(ctx); err != nil {
		return api.Host{}, err
	}
	for _, h := range list.Items {
		if h.Name == host {
			return h, nil
		}
	}
	return api.Host{}, fmt.Errorf("%w: host %s left the cluster", service.ErrNoSuchHost, host)
}

// AddMember lets a host join the cluster (service.Hosts).
func (svc *hostService) AddMember(ctx context.Context, req api.JoinRequest) (api.JoinInfo, error) {
	if req.Name == "" || strings.ContainsAny(req.Name, "=, \t") {
		return api.JoinInfo{}, fieldErr("name", fmt.Sprintf("%q: give the joining host's name (no '=', ',' or blanks)", req.Name))
	}
	if !svc.st.Embedded() {
		// The cluster's etcd is not the agents' own: its members are
		// managed with etcd's tools, and every host is a client of it.
		return api.JoinInfo{Endpoints: svc.st.Endpoints()}, nil
	}
	if !svc.st.MemberMode() {
		return api.JoinInfo{}, fmt.Errorf("%w: host %s runs the single-host default etcd, on loopback only, which no other host reaches: restart its agent as the cluster's first member, "+
			"govisor serve --etcd-initial-cluster %s=http://IP:2380 --etcd-endpoints http://IP:2379 (IP: an address the other hosts reach)", ErrInvalid, svc.host, svc.host)
	}
	info, err := svc.st.AddMember(ctx, req.Name, req.PeerURL)
	if errors.Is(err, store.ErrInvalid) {
		return info, fieldErr("peerURL", err.Error())
	}
	if err == nil {
		how := "as a client of the etcd members"
		if info.Member {
			how = "as an etcd member (" + req.PeerURL + ")"
		}
		svc.event(api.ClusterEvent{Kind: api.EventHostJoined, Host: req.Name, Reason: fmt.Sprintf("host %s joins the cluster %s", req.Name, how)})
	}
	return info, err
}
