// Package ha restarts the HA VMs of a dead host on the other hosts, as
// vSphere HA and Proxmox's ha-manager do: the cluster's leader runs its
// Controller. A host is dead when its record in etcd expired with its
// lease; its HA VMs stopped themselves by then (self-fencing, see
// internal/node), so a restart elsewhere never makes a second copy. The
// planning (Plan) is pure; the Controller feeds it snapshots from the store
// and carries its moves out with store.MoveVM.
package ha

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/placement"
)

// VM is a VM of the snapshot Plan reads: its definition, desired power and
// host.
type VM struct {
	Spec  api.VMSpec
	Power api.Power
	Host  string
}

// Snapshot is what Plan decides from: the live hosts (their records in
// etcd), the pools and every VM.
type Snapshot struct {
	Hosts []api.Host
	Pools []api.Pool
	VMs   []VM
}

// Restart is one HA VM to restart on another host.
type Restart struct {
	VM   string
	From string // the dead host
	To   string
}

// Waiting is an HA VM of a dead host that fits on no live host now, with
// the reason per host.
type Waiting struct {
	VM     string
	From   string
	Reason string
}

// Decision is Plan's answer.
type Decision struct {
	Restarts []Restart
	Waiting  []Waiting
}

// Plan finds the HA VMs meant to run on hosts that are not live and places
// them on live hosts, highest restart priority first (then the largest),
// each placement counting against the capacity of the next (placement's
// PlaceBatch). VMs of live hosts, and VMs that are not HA or not meant to
// run, are left alone.
func Plan(s Snapshot, cfg placement.Config) (Decision, error) {
	live := map[string]bool{}
	var c placement.Cluster
	for _, h := range s.Hosts {
		live[h.Name] = true
		c.Hosts = append(c.Hosts, placement.Host{Name: h.Name, State: placement.HostReady, CPUs: h.CPUs, MemoryMiB: h.MemoryMiB,
			CPU: placement.CPU{Vendor: h.CPUVendor, Model: h.CPUModel, Features: h.CPUFeatures}})
	}
	dead := map[string]bool{}
	for _, v := range s.VMs {
		if v.Host != "" && !live[v.Host] && !dead[v.Host] {
			dead[v.Host] = true
			c.Hosts = append(c.Hosts, placement.Host{Name: v.Host, State: placement.HostUnreachable})
		}
	}
	c.Pools = pools(s.Pools)
	var todo []placement.VM
	from := map[string]string{}
	for _, v := range s.VMs {
		if v.Host == "" || v.Power != api.PowerRunning {
			continue
		}
		pv, local := placementVM(v, s.Pools)
		for _, p := range local {
			c.Pools = append(c.Pools, placement.Pool{Name: p, Host: v.Host})
		}
		if dead[v.Host] && v.Spec.HA {
			todo = append(todo, pv)
			from[v.Spec.Name] = v.Host
			continue
		}
		if !dead[v.Host] {
			c.VMs = append(c.VMs, pv) // holds capacity on its live host
		}
	}
	if len(todo) == 0 {
		return Decision{}, nil
	}
	c.Pools = dedupPools(c.Pools)
	st, err := placement.New(c, cfg)
	if err != nil {
		return Decision{}, fmt.Errorf("ha: cluster snapshot: %w", err)
	}
	res := st.PlaceBatch(todo)
	var d Decision
	for _, p := range res.Placed {
		d.Restarts = append(d.Restarts, Restart{VM: p.VM, From: from[p.VM], To: p.Host})
	}
	for _, f := range res.Failed {
		d.Waiting = append(d.Waiting, Waiting{VM: f.VM, From: from[f.VM], Reason: f.Err.Error()})
	}
	return d, nil
}

// placementVM is v as placement sees it, with the names of the host-local
// pools it made up for disks outside every known pool.
func placementVM(v VM, known []api.Pool) (placement.VM, []string) {
	mib, _ := api.ParseMemoryMiB(v.Spec.Memory)
	if mib == 0 {
		mib = 256 // the VMM's default
	}
	cpus := max(v.Spec.CPUs, 1)
	pv := placement.VM{Name: v.Spec.Name, Host: v.Host, CPUs: cpus, MemoryMiB: mib, HA: v.Spec.HA, Priority: api.PriorityRank(v.Spec.RestartPriority)}
	var local []string
	for _, d := range v.Spec.Disks {
		name := d.Pool
		if name == "" {
			name = poolOf(d.Path, known)
		}
		if name == "" {
			// A disk outside every pool is taken to be on its host's own
			// storage: only that host reaches it.
			name = "local:" + v.Host + ":" + filepath.Dir(d.Path)
			local = append(local, name)
		}
		if !slices.Contains(pv.Pools, name) {
			pv.Pools = append(pv.Pools, name)
		}
	}
	return pv, local
}

// poolOf names the pool whose directory holds path ("" for none).
func poolOf(path string, known []api.Pool) string {
	for _, p := range known {
		if p.Path != "" && strings.HasPrefix(filepath.Clean(path), filepath.Clean(p.Path)+"/") {
			return p.Name
		}
	}
	return ""
}

// pools converts the store's pools for placement.
func pools(ps []api.Pool) []placement.Pool {
	var out []placement.Pool
	for _, p := range ps {
		out = append(out, placement.Pool{Name: p.Name, Shared: p.Shared || p.Kind == api.PoolShared, Host: p.Host})
	}
	return out
}

// dedupPools drops repeated pool names (a local pool of several VMs).
func dedupPools(ps []placement.Pool) []placement.Pool {
	seen := map[string]bool{}
	out := ps[:0]
	for _, p := range ps {
		if !seen[p.Name] {
			seen[p.Name] = true
			out = append(out, p)
		}
	}
	return out
}
