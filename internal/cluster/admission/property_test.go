package admission_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	. "github.com/govisor/govisor/internal/cluster/admission"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/placement/placementtest"
)

// naiveLargest computes, by brute force, the ready host whose HA VMs need
// the largest fraction of the other ready hosts' free capacity.
func naiveLargest(c placement.Cluster, s *placement.State) (string, float64) {
	best, bestF := "", -1.0
	for _, h := range c.Hosts {
		if h.State != placement.HostReady {
			continue
		}
		var needC, needM, haveC, haveM float64
		for _, vm := range c.VMs {
			if vm.Host == h.Name && vm.HA {
				needC, needM = needC+float64(vm.CPUs), needM+float64(vm.MemoryMiB)
			}
		}
		for _, o := range c.Hosts {
			if o.State == placement.HostReady && o.Name != h.Name {
				u, _ := s.Usage(o.Name)
				haveC += math.Max(float64(u.CPULimit-u.CPUs), 0)
				haveM += math.Max(float64(u.MemoryLimitMiB)-float64(u.MemoryMiB), 0)
			}
		}
		f := 0.0
		for _, p := range [][2]float64{{needC, haveC}, {needM, haveM}} {
			if p[0] > 0 && p[1] <= 0 {
				f = math.Inf(1)
			} else if p[0] > 0 {
				f = math.Max(f, p[0]/p[1])
			}
		}
		if f > bestF {
			best, bestF = h.Name, f
		}
	}
	return best, bestF
}

// TestAdmissionProperties admits a random VM into many random clusters
// under each policy and checks the decision by brute force: the state is
// untouched, the VM's host takes it, a VM refused by placement fits
// nowhere, the simulated failure is of the largest host, its HA VMs land
// without breaking a rule on ready surviving hosts, those refused fit
// nowhere after the others landed, and the policies agree.
func TestAdmissionProperties(t *testing.T) {
	for seed := range 500 {
		rng := rand.New(rand.NewPCG(uint64(seed), 3))
		o := placementtest.Options{Hosts: 1 + rng.IntN(6), VMs: 1 + rng.IntN(30), NonReady: 0.15, Rules: 0.2, Groups: 3, Small: true}
		cfg := placement.Config{Strategy: []placement.Strategy{placement.Spread, placement.Pack}[rng.IntN(2)], CPUOvercommit: 2}
		c := placementtest.Random(rng, o)
		vm := c.VMs[len(c.VMs)-1]
		vm.Name = "candidate"
		c.VMs = c.VMs[:rng.IntN(len(c.VMs))] // a cluster more or less full
		c, _, err := placementtest.Placed(c, cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := placement.New(c, cfg)
		if err != nil {
			t.Fatal(err)
		}
		before := s.VMs()
		var refuse Decision
		for _, opts := range []Options{{}, {Policy: Warn}, {Policy: Off}, {AllHosts: true}} {
			d, err := Admit(s, vm, opts)
			if !reflect.DeepEqual(s.VMs(), before) {
				t.Fatalf("seed %d: Admit changed the state", seed)
			}
			if errors.Is(err, placement.ErrNoHost) {
				for _, h := range c.Hosts {
					if len(placementtest.HostFits(c, cfg, vm, h.Name)) == 0 {
						t.Fatalf("seed %d: refused (%v) but %s takes it", seed, err, h.Name)
					}
				}
				continue
			}
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if f := placementtest.HostFits(c, cfg, vm, d.Host); len(f) > 0 {
				t.Fatalf("seed %d: admitted on %s, which fails %v", seed, d.Host, f)
			}
			after := c
			placedVM := vm
			placedVM.Host = d.Host
			after.VMs = append(slices.Clone(c.VMs), placedVM)
			switch {
			case opts.Policy == Off:
				if !d.Allowed || d.Failover != nil {
					t.Fatalf("seed %d: policy off: %+v", seed, d)
				}
				continue
			case opts.Policy == Warn:
				if !d.Allowed || d.Warning != refuse.Reason {
					t.Fatalf("seed %d: warn %+v, refuse %+v", seed, d, refuse)
				}
			case !opts.AllHosts:
				refuse = d
				if d.Allowed != d.Failover.OK() || d.Allowed != (d.Reason == "") {
					t.Fatalf("seed %d: %+v", seed, d)
				}
				as, _ := placement.New(after, cfg)
				if want, wantF := naiveLargest(after, as); want != "" && d.Failover.Failed[0].Fraction != wantF {
					t.Fatalf("seed %d: failed %+v, brute force: %s at %v", seed, d.Failover.Failed, want, wantF)
				}
			default:
				if refuse.Allowed && !d.Allowed && d.Failover.Failed[0].Host == refuse.Failover.Failed[0].Host {
					t.Fatalf("seed %d: the exhaustive check refuses the largest host the first allowed", seed)
				}
				if d.Allowed && !refuse.Allowed {
					t.Fatalf("seed %d: the exhaustive check allows what the largest host's refuses", seed)
				}
			}
			checkFailover(t, seed, after, cfg, *d.Failover)
		}
	}
}

// checkFailover replays a simulated failure on c by brute force.
func checkFailover(t *testing.T, seed int, c placement.Cluster, cfg placement.Config, f Failover) {
	t.Helper()
	failed := map[string]bool{}
	for _, d := range f.Failed {
		failed[d.Host] = true
	}
	out := placement.Cluster{Pools: c.Pools}
	for _, h := range c.Hosts {
		if failed[h.Name] {
			h.State = placement.HostUnreachable
		}
		out.Hosts = append(out.Hosts, h)
	}
	dest := map[string]string{}
	for _, p := range f.Placed {
		dest[p.VM] = p.Host
	}
	var ha []placement.VM
	for _, vm := range c.VMs {
		if failed[vm.Host] {
			if !vm.HA {
				continue
			}
			ha = append(ha, vm)
			vm.Host = dest[vm.Name]
		}
		out.VMs = append(out.VMs, vm)
	}
	if len(ha) != len(f.Placed)+len(f.Refused) {
		t.Fatalf("seed %d: %d HA VMs on %v, %d placed, %d refused", seed, len(ha), f.Failed, len(f.Placed), len(f.Refused))
	}
	if v := placementtest.Violations(out, cfg); len(v) > 0 {
		t.Fatalf("seed %d: failover breaks %v", seed, v)
	}
	for _, p := range f.Placed {
		if failed[p.Host] || !slices.ContainsFunc(c.Hosts, func(h placement.Host) bool { return h.Name == p.Host && h.State == placement.HostReady }) {
			t.Fatalf("seed %d: %s restarted on %s", seed, p.VM, p.Host)
		}
	}
	for _, r := range f.Refused {
		vm := ha[slices.IndexFunc(ha, func(v placement.VM) bool { return v.Name == r.VM })]
		for _, h := range out.Hosts {
			if len(placementtest.HostFits(out, cfg, vm, h.Name)) == 0 {
				t.Fatalf("seed %d: %s refused a restart (%v) but %s takes it", seed, r.VM, r.Err, h.Name)
			}
		}
	}
}
