package placement_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	. "github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/placement/placementtest"
)

// clusters is how many random clusters each property test tries.
var clusters = flag.Int("clusters", 300, "random clusters per property test")

// randomSetup draws a cluster (VMs not placed) and a configuration.
func randomSetup(seed int) (Cluster, Config, *rand.Rand) {
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	c := placementtest.Random(rng, placementtest.Options{
		Hosts: 1 + rng.IntN(10), VMs: rng.IntN(50), NonReady: 0.2, Rules: 0.3,
		Groups: 1 + rng.IntN(4), Small: rng.IntN(2) == 0, MixedVendors: rng.IntN(3) == 0,
	})
	cfg := Config{
		Strategy:         []Strategy{Spread, Pack}[rng.IntN(2)],
		CPUOvercommit:    []float64{0, 1, 1.5}[rng.IntN(3)],
		MemoryOvercommit: []float64{0, 1, 1.25}[rng.IntN(3)],
	}
	return c, cfg, rng
}

// set turns filters into a sorted set.
func set(f []Filter) []Filter {
	f = slices.Clone(f)
	slices.Sort(f)
	return slices.Compact(f)
}

// naiveBest ranks the hosts that fit by brute force: the most preferred,
// then the least (spread) or most (pack) loaded after placement in the
// binding dimension, then the first by name.
func naiveBest(c Cluster, cfg Config, vm VM, fits map[string][]Filter) string {
	best, bestPref, bestLoad := "", 0, 0.0
	names := make([]string, 0, len(c.Hosts))
	for _, h := range c.Hosts {
		names = append(names, h.Name)
	}
	slices.Sort(names)
	for _, name := range names {
		if len(fits[name]) > 0 {
			continue
		}
		i := slices.IndexFunc(c.Hosts, func(h Host) bool { return h.Name == name })
		h := c.Hosts[i]
		pref := 0
		for _, r := range vm.HostRules {
			sel, _ := ParseSelector(r.Selector)
			if m := sel.Matches(h.Labels); m && r.Kind == Should {
				pref++
			} else if m && r.Kind == ShouldNot {
				pref--
			}
		}
		cpus, mem := int64(vm.CPUs), vm.MemoryMiB
		for _, o := range c.VMs {
			if o.Host == name {
				cpus, mem = cpus+int64(o.CPUs), mem+o.MemoryMiB
			}
		}
		s, _ := New(Cluster{Hosts: []Host{h}}, cfg)
		u, _ := s.Usage(name)
		load := max(float64(cpus)/float64(u.CPULimit), float64(mem)/float64(u.MemoryLimitMiB))
		if cfg.Strategy != Pack {
			load = -load
		}
		if best == "" || pref > bestPref || pref == bestPref && load > bestLoad {
			best, bestPref, bestLoad = name, pref, load
		}
	}
	return best
}

// TestPlacementProperties places the VMs of many random clusters one by
// one and checks each decision against brute force: a placed VM meets
// every filter on its host (and that host is the best by the naive
// ranking); a refused VM fits no host, with the reasons brute force finds;
// Check agrees with brute force on every host; no rule or capacity is
// ever broken.
func TestPlacementProperties(t *testing.T) {
	for seed := range *clusters {
		c, cfg, _ := randomSetup(seed)
		s, err := New(Cluster{Hosts: c.Hosts, Pools: c.Pools}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		cur := Cluster{Hosts: c.Hosts, Pools: c.Pools}
		for _, vm := range c.VMs {
			fits := map[string][]Filter{}
			for _, h := range c.Hosts {
				fits[h.Name] = placementtest.HostFits(cur, cfg, vm, h.Name)
				rej, err := s.Check(vm, h.Name)
				if err != nil {
					t.Fatal(err)
				}
				if (rej == nil) != (len(fits[h.Name]) == 0) || rej != nil && !slices.Equal(set(rej.Filters), set(fits[h.Name])) {
					t.Fatalf("seed %d: Check(%s, %s) = %v, brute force %v", seed, vm.Name, h.Name, rej, fits[h.Name])
				}
			}
			host, err := s.Place(vm)
			if err != nil {
				var nh *NoHostError
				if !errors.As(err, &nh) || len(nh.Rejections) != len(c.Hosts) {
					t.Fatalf("seed %d: %s: %v", seed, vm.Name, err)
				}
				for _, r := range nh.Rejections {
					if !slices.Equal(set(r.Filters), set(fits[r.Host])) || len(r.Reasons) != len(r.Filters) {
						t.Fatalf("seed %d: %s refused on %s for %v, brute force says %v", seed, vm.Name, r.Host, r.Filters, fits[r.Host])
					}
				}
				continue
			}
			if len(fits[host]) > 0 {
				t.Fatalf("seed %d: %s placed on %s, which fails %v", seed, vm.Name, host, fits[host])
			}
			if want := naiveBest(cur, cfg, vm, fits); host != want {
				t.Fatalf("seed %d: %s placed on %s, naive ranking picks %s", seed, vm.Name, host, want)
			}
			vm.Host = host
			cur.VMs = append(cur.VMs, vm)
		}
		if v := placementtest.Violations(cur, cfg); len(v) > 0 {
			t.Fatalf("seed %d: %v", seed, v)
		}
		checkUsage(t, s, cur, seed)
	}
}

// checkUsage compares the State's allocations with sums over the VMs.
func checkUsage(t *testing.T, s *State, c Cluster, seed int) {
	t.Helper()
	for _, h := range c.Hosts {
		var cpus int64
		var mem uint64
		for _, vm := range c.VMs {
			if vm.Host == h.Name {
				cpus, mem = cpus+int64(vm.CPUs), mem+vm.MemoryMiB
			}
		}
		if u, _ := s.Usage(h.Name); u.CPUs != cpus || u.MemoryMiB != mem {
			t.Fatalf("seed %d: %s usage %+v, VMs sum to %d vCPUs %d MiB", seed, h.Name, u, cpus, mem)
		}
	}
}

// TestBatchProperties fails a random ready host of many random clusters
// and places its VMs as a batch: no rule or capacity is broken, every VM
// lands on a ready host, higher priorities are placed first, and every VM
// refused fits no host even at the end.
func TestBatchProperties(t *testing.T) {
	for seed := range *clusters {
		c, cfg, rng := randomSetup(seed)
		c, _, err := placementtest.Placed(c, cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(c, cfg)
		if err != nil {
			t.Fatal(err)
		}
		dead := c.Hosts[rng.IntN(len(c.Hosts))].Name
		s.SetHostState(dead, HostFenced)
		res := s.PlaceBatch(s.VMsOn(dead))
		after := Cluster{Hosts: s.Hosts(), Pools: c.Pools, VMs: s.VMs()}
		if v := placementtest.Violations(after, cfg); len(v) > 0 {
			t.Fatalf("seed %d: %v", seed, v)
		}
		prio := map[string]int{}
		for _, vm := range c.VMs {
			prio[vm.Name] = vm.Priority
		}
		for i, p := range res.Placed {
			if h, _ := s.Host(p.Host); h.State != HostReady {
				t.Fatalf("seed %d: %s placed on %s host %s", seed, p.VM, h.State, p.Host)
			}
			if i > 0 && prio[res.Placed[i-1].VM] < prio[p.VM] {
				t.Fatalf("seed %d: %s (priority %d) placed after %s", seed, p.VM, prio[p.VM], res.Placed[i-1].VM)
			}
		}
		for _, f := range res.Failed {
			vm := c.VMs[slices.IndexFunc(c.VMs, func(v VM) bool { return v.Name == f.VM })]
			for _, h := range c.Hosts {
				if len(placementtest.HostFits(after, cfg, vm, h.Name)) == 0 {
					t.Fatalf("seed %d: %s refused (%v) but %s takes it", seed, f.VM, f.Err, h.Name)
				}
			}
		}
		checkUsage(t, s, after, seed)
	}
}

// TestRandomClustersAreVaried guards the generator: the property tests
// must see refusals of every kind.
func TestRandomClustersAreVaried(t *testing.T) {
	seen := map[Filter]int{}
	placed := 0
	for seed := range *clusters {
		c, cfg, _ := randomSetup(seed)
		s, _ := New(Cluster{Hosts: c.Hosts, Pools: c.Pools}, cfg)
		for _, vm := range c.VMs {
			_, err := s.Place(vm)
			var nh *NoHostError
			if errors.As(err, &nh) {
				for f, n := range nh.Count() {
					seen[f] += n
				}
			} else if err == nil {
				placed++
			}
		}
	}
	for _, f := range []Filter{FilterState, FilterCPU, FilterMemory, FilterStorage, FilterCPUModel, FilterHostRule, FilterAffinity, FilterAntiAffinity} {
		if seen[f] == 0 {
			t.Errorf("no refusal by %s in %d clusters", f, *clusters)
		}
	}
	if placed == 0 {
		t.Error("nothing placed")
	}
	t.Log(fmt.Sprint("refusals by filter: ", seen, ", placed: ", placed))
}
