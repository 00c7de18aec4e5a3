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

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/view"
)

// VM is a VM of the snapshot Plan reads: its definition, desired power and
// host.
type VM = view.VM

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
	for _, h := range s.Hosts {
		live[h.Name] = true
	}
	// The HA VMs of hosts that are not live, meant to run.
	orphan := func(v VM) bool { return v.Host != "" && !live[v.Host] && v.Spec.HA && v.Power == api.PowerRunning }
	var todo []placement.VM
	from := map[string]string{}
	for _, v := range s.VMs {
		if orphan(v) {
			todo = append(todo, view.PlacementVM(v, s.Pools))
			from[v.Spec.Name] = v.Host
		}
	}
	if len(todo) == 0 {
		return Decision{}, nil
	}
	st, err := placement.New(view.Cluster(s.Hosts, s.Pools, s.VMs, orphan), cfg)
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
