// Package view turns the store's records (hosts, pools, VM definitions)
// into the snapshot the pure planners read (package placement): a VM's
// size, its disks' pools, its HA priority. Disks outside every known pool
// are taken to be on their host's own storage.
package view

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/placement"
)

// VM is a VM as the store has it: its definition, desired power and host.
type VM struct {
	Spec  api.VMSpec
	Power api.Power
	Host  string
}

// Host is h as placement sees it: ready unless its State says otherwise.
func Host(h api.Host) placement.Host {
	state := placement.HostReady
	switch h.State {
	case api.HostEnteringMaintenance:
		state = placement.HostEnteringMaintenance
	case api.HostMaintenance:
		state = placement.HostMaintenance
	case api.HostUnreachable:
		state = placement.HostUnreachable
	}
	return placement.Host{Name: h.Name, State: state, CPUs: h.CPUs, MemoryMiB: h.MemoryMiB, Labels: h.Labels,
		CPU: placement.CPU{Vendor: h.CPUVendor, Model: h.CPUModel, Features: h.CPUFeatures}}
}

// InMaintenance is hs with the hosts inMaintenance names marked so
// (placement then gives them no VM).
func InMaintenance(hs []api.Host, inMaintenance func(host string) bool) []api.Host {
	out := make([]api.Host, len(hs))
	for i, h := range hs {
		if inMaintenance(h.Name) {
			h.State = api.HostMaintenance
		}
		out[i] = h
	}
	return out
}

// Cluster is the placement snapshot of live hosts, pools and VMs. Hosts
// that VMs name but that are not live are added as unreachable; VMs that
// are meant to run on live hosts hold their capacity (skip tells which VMs
// to leave out, e.g. those about to be placed).
func Cluster(hosts []api.Host, pools []api.Pool, vms []VM, skip func(VM) bool) placement.Cluster {
	var c placement.Cluster
	live := map[string]bool{}
	feats := map[string][]string{}
	for _, h := range hosts {
		live[h.Name] = true
		feats[h.Name] = h.CPUFeatures
		c.Hosts = append(c.Hosts, Host(h))
	}
	dead := map[string]bool{}
	for _, v := range vms {
		if v.Host != "" && !live[v.Host] && !dead[v.Host] {
			dead[v.Host] = true
			c.Hosts = append(c.Hosts, placement.Host{Name: v.Host, State: placement.HostUnreachable})
		}
	}
	seen := map[string]bool{}
	for _, p := range pools {
		seen[p.Name] = true
		c.Pools = append(c.Pools, placement.Pool{Name: p.Name, Shared: p.Shared || p.Kind == api.PoolShared, Host: p.Host})
	}
	for _, v := range vms {
		pv := PlacementVM(v, pools)
		if v.Spec.CPU == api.CPUHost {
			// Its guest has its host's CPU; a baseline guest (the default)
			// has what every host has, which joining hosts keep.
			pv.CPUFeatures = feats[v.Host]
		}
		for _, name := range pv.Pools {
			if !seen[name] {
				// A disk outside every pool: its host's own storage.
				seen[name] = true
				c.Pools = append(c.Pools, placement.Pool{Name: name, Host: v.Host})
			}
		}
		if v.Host == "" || v.Power != api.PowerRunning || !live[v.Host] || (skip != nil && skip(v)) {
			continue
		}
		c.VMs = append(c.VMs, pv)
	}
	return c
}

// PlacementVM is v as placement sees it.
func PlacementVM(v VM, pools []api.Pool) placement.VM {
	mib, _ := api.ParseMemoryMiB(v.Spec.Memory)
	if mib == 0 {
		mib = 256 // the VMM's default
	}
	pv := placement.VM{Name: v.Spec.Name, Host: v.Host, CPUs: max(v.Spec.CPUs, 1), MemoryMiB: mib,
		HA: v.Spec.HA, Priority: api.PriorityRank(v.Spec.RestartPriority), Affinity: v.Spec.Affinity, AntiAffinity: v.Spec.AntiAffinity}
	for _, r := range v.Spec.HostRules {
		// Validated when the VM was defined; one that no longer parses is
		// left to placement, which names it.
		if hr, err := placement.ParseHostRule(r); err == nil {
			pv.HostRules = append(pv.HostRules, hr)
		} else {
			pv.HostRules = append(pv.HostRules, placement.HostRule{Kind: placement.Must, Selector: r})
		}
	}
	for _, d := range v.Spec.Disks {
		name := d.Pool
		if name == "" {
			name = poolOf(d.Path, pools)
		}
		if name == "" {
			name = LocalPool(v.Host, d.Path)
		}
		if !slices.Contains(pv.Pools, name) {
			pv.Pools = append(pv.Pools, name)
		}
	}
	return pv
}

// LocalPool names the made-up pool of a disk outside every known pool: the
// disk's folder on the VM's host, which only that host reaches.
func LocalPool(host, path string) string { return "local:" + host + ":" + filepath.Dir(path) }

// poolOf names the pool whose folder holds path ("" for none).
func poolOf(path string, pools []api.Pool) string {
	for _, p := range pools {
		if p.Path != "" && strings.HasPrefix(filepath.Clean(path), filepath.Clean(p.Path)+"/") {
			return p.Name
		}
	}
	return ""
}

// LocalDisks says whether v has disks on storage only its host reaches:
// a live migration of it mirrors them.
func LocalDisks(v placement.VM, pools []api.Pool) bool {
	for _, name := range v.Pools {
		shared := slices.ContainsFunc(pools, func(p api.Pool) bool { return p.Name == name && (p.Shared || p.Kind == api.PoolShared) })
		if !shared {
			return true
		}
	}
	return false
}
