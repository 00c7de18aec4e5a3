package balance_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	. "github.com/govisor/govisor/internal/cluster/balance"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/placement/placementtest"
)

// randomCluster draws a placed cluster with measured loads, skewed onto a
// few hot hosts, some VMs pinned or mirrorable, and some hosts (with
// their VMs) no longer ready.
func randomCluster(seed int) (Cluster, Options, *rand.Rand) {
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	o := placementtest.Options{Hosts: 2 + rng.IntN(8), VMs: rng.IntN(60), Rules: 0.25, Groups: 1 + rng.IntN(4), Small: rng.IntN(3) == 0}
	if seed%8 == 0 { // more hosts than the planner's narrow search
		o.Hosts, o.VMs = 20+rng.IntN(20), 100+rng.IntN(100)
	}
	cfg := placement.Config{CPUOvercommit: []float64{0, 1, 2}[rng.IntN(3)]}
	pc, _, _ := placementtest.Placed(placementtest.Random(rng, o), cfg)
	hot := map[string]bool{}
	for _, h := range pc.Hosts {
		hot[h.Name] = rng.IntN(3) == 0
	}
	var c Cluster
	c.Pools = pc.Pools
	for _, vm := range pc.VMs {
		if vm.Host == "" {
			continue
		}
		b := VM{VM: vm, CPULoad: rng.Float64() * float64(vm.CPUs) * 0.2, Mirror: rng.IntN(2) == 0}
		if hot[vm.Host] {
			b.CPULoad = float64(vm.CPUs) * (0.5 + rng.Float64()/2)
		}
		if rng.IntN(10) == 0 {
			b.Pinned = "a passthrough device"
		}
		if rng.IntN(3) == 0 {
			b.MemoryUsedMiB = 1 + uint64(rng.IntN(int(vm.MemoryMiB)))
		}
		c.VMs = append(c.VMs, b)
	}
	for _, h := range pc.Hosts {
		if rng.IntN(8) == 0 {
			h.State = []placement.HostState{placement.HostMaintenance, placement.HostUnreachable, placement.HostFenced, placement.HostEnteringMaintenance}[rng.IntN(4)]
		}
		c.Hosts = append(c.Hosts, h)
	}
	opts := Options{Placement: cfg, Threshold: []float64{0, 0.05, 0.3}[rng.IntN(3)], MaxPerHost: rng.IntN(4), MaxMoves: rng.IntN(6)}
	return c, opts, rng
}

// asPlacement is the cluster as placement sees it (a mirrorable VM's
// disks follow it).
func asPlacement(c Cluster) placement.Cluster {
	pc := placement.Cluster{Hosts: c.Hosts, Pools: c.Pools}
	for _, vm := range c.VMs {
		v := vm.VM
		v.MirrorDisks = vm.Mirror
		pc.VMs = append(pc.VMs, v)
	}
	return pc
}

// imbalance computes max-min ready host load by brute force.
func imbalance(c Cluster) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, h := range c.Hosts {
		if h.State != placement.HostReady || h.CPUs == 0 || h.MemoryMiB == 0 {
			continue
		}
		var cpu, mem float64
		for _, vm := range c.VMs {
			if vm.Host == h.Name {
				used := vm.MemoryUsedMiB
				if used == 0 {
					used = vm.MemoryMiB
				}
				cpu, mem = cpu+vm.CPULoad, mem+float64(used)
			}
		}
		l := max(cpu/float64(h.CPUs), mem/float64(h.MemoryMiB))
		lo, hi = min(lo, l), max(hi, l)
	}
	if hi < lo {
		return 0
	}
	return hi - lo
}

// ready says whether host is ready in c.
func ready(c Cluster, host string) bool {
	return slices.ContainsFunc(c.Hosts, func(h placement.Host) bool { return h.Name == host && h.State == placement.HostReady })
}

// moveVM returns c with vm on host.
func moveVM(c Cluster, vm, host string) Cluster {
	c.VMs = slices.Clone(c.VMs)
	for i := range c.VMs {
		if c.VMs[i].Name == vm {
			c.VMs[i].Host = host
		}
	}
	return c
}

// TestRebalanceProperties plans on many random clusters and checks the
// plan by brute force: it never breaks a rule or a capacity limit (after
// any subset of its moves, in any order), never moves a VM twice or a
// pinned VM, never uses a host that is not ready, keeps the limits, and
// never leaves the imbalance worse than it found it.
func TestRebalanceProperties(t *testing.T) {
	balanced, moves := 0, 0
	for seed := range 400 {
		c, o, rng := randomCluster(seed)
		if v := placementtest.Violations(asPlacement(c), o.Placement); len(v) > 0 {
			t.Fatalf("seed %d: the generator broke %v", seed, v)
		}
		p, err := Rebalance(c, o)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		host := map[string]VM{}
		for _, vm := range c.VMs {
			host[vm.Name] = vm
		}
		perHost, from, to := map[string]int{}, map[string]bool{}, map[string]bool{}
		seen := map[string]bool{}
		limit := max(o.MaxPerHost, 0)
		if limit == 0 {
			limit = DefaultMaxPerHost
		}
		for i, m := range p.Moves {
			vm := host[m.VM]
			switch {
			case seen[m.VM]:
				t.Fatalf("seed %d: %s moved twice", seed, m.VM)
			case vm.Pinned != "":
				t.Fatalf("seed %d: pinned %s moved", seed, m.VM)
			case m.From != vm.Host || m.To == m.From || !ready(c, m.From) || !ready(c, m.To):
				t.Fatalf("seed %d: %s from %s (on %s) to %s", seed, m.VM, m.From, vm.Host, m.To)
			case m.Gain < -1e-9 || i > 0 && m.Imbalance > p.Moves[i-1].Imbalance+1e-12:
				t.Fatalf("seed %d: move %d widens: gain %v, imbalance %v", seed, i, m.Gain, m.Imbalance)
			}
			seen[m.VM] = true
			perHost[m.From]++
			perHost[m.To]++
			from[m.From], to[m.To] = true, true
		}
		for h, n := range perHost {
			if n > limit || from[h] && to[h] {
				t.Fatalf("seed %d: %s in %d moves (limit %d), gives %v takes %v", seed, h, n, limit, from[h], to[h])
			}
		}
		if o.MaxMoves > 0 && len(p.Moves) > o.MaxMoves {
			t.Fatalf("seed %d: %d moves, limit %d", seed, len(p.Moves), o.MaxMoves)
		}
		after := c
		for _, k := range rng.Perm(len(p.Moves)) {
			after = moveVM(after, p.Moves[k].VM, p.Moves[k].To)
			if v := placementtest.Violations(asPlacement(after), o.Placement); len(v) > 0 {
				t.Fatalf("seed %d: after moving %s: %v", seed, p.Moves[k].VM, v)
			}
		}
		b, a := imbalance(c), imbalance(after)
		th := o.Threshold
		if th == 0 {
			th = DefaultThreshold
		}
		if a > b+1e-9 || math.Abs(a-p.After) > 1e-9 || math.Abs(b-p.Before) > 1e-9 || p.Balanced != (p.After <= th) || !p.Balanced && p.Why == "" {
			t.Fatalf("seed %d: imbalance %v -> %v, plan %v -> %v, balanced %v (band %v), why %q", seed, b, a, p.Before, p.After, p.Balanced, th, p.Why)
		}
		if p.Balanced {
			balanced++
		}
		moves += len(p.Moves)
	}
	t.Logf("%d of 400 plans balanced, %d moves", balanced, moves)
}

// TestEvacuateProperties evacuates a random host of many random clusters:
// every VM of the host is moved or listed as stuck, once; moves go to
// ready hosts and break no rule; pinned VMs stay; a VM placement refused
// fits no host (when no affinity group was kept back).
func TestEvacuateProperties(t *testing.T) {
	stuckN, movedN := 0, 0
	for seed := range 400 {
		c, o, rng := randomCluster(seed)
		h := c.Hosts[rng.IntN(len(c.Hosts))]
		e, err := Evacuate(c, h.Name, o)
		if h.State == placement.HostUnreachable || h.State == placement.HostFenced {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("seed %d: evacuating a %s host: %v", seed, h.State, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		count := map[string]int{}
		after := c
		for _, m := range e.Moves {
			count[m.VM]++
			if m.From != h.Name || m.To == h.Name || !ready(c, m.To) {
				t.Fatalf("seed %d: %+v", seed, m)
			}
			after = moveVM(after, m.VM, m.To)
		}
		kept := false
		for _, s := range e.Stuck {
			count[s.VM]++
			kept = kept || strings.HasPrefix(s.Reason, "affinity group ")
		}
		for _, vm := range c.VMs {
			if vm.Host == h.Name && count[vm.Name] != 1 || vm.Host != h.Name && count[vm.Name] != 0 {
				t.Fatalf("seed %d: %s (on %s) listed %d times", seed, vm.Name, vm.Host, count[vm.Name])
			}
		}
		if v := placementtest.Violations(asPlacement(after), o.Placement); len(v) > 0 {
			t.Fatalf("seed %d: %v", seed, v)
		}
		check := asPlacement(after)
		check.Hosts = slices.Clone(check.Hosts)
		for i := range check.Hosts {
			if check.Hosts[i].Name == h.Name {
				check.Hosts[i].State = placement.HostEnteringMaintenance
			}
		}
		for _, s := range e.Stuck {
			vm := c.VMs[slices.IndexFunc(c.VMs, func(v VM) bool { return v.Name == s.VM })]
			if vm.Pinned != "" != strings.HasPrefix(s.Reason, "pinned: ") {
				t.Fatalf("seed %d: %s pinned %q stuck for %q", seed, vm.Name, vm.Pinned, s.Reason)
			}
			if kept || !strings.HasPrefix(s.Reason, "placement: ") {
				continue
			}
			pv := vm.VM
			pv.MirrorDisks = vm.Mirror
			for _, o2 := range check.Hosts {
				if len(placementtest.HostFits(check, o.Placement, pv, o2.Name)) == 0 {
					t.Fatalf("seed %d: %s stuck (%s) but %s takes it", seed, vm.Name, s.Reason, o2.Name)
				}
			}
		}
		stuckN += len(e.Stuck)
		movedN += len(e.Moves)
	}
	t.Logf("evacuations: %d moved, %d stuck", movedN, stuckN)
}
