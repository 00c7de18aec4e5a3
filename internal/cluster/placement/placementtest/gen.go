// Package placementtest generates random clusters for property tests and
// benchmarks of placement, admission control and the balance planner, and
// checks a cluster against every placement rule with a naive reference
// written apart from the placement package's indexed one.
package placementtest

import (
	"fmt"
	"math/rand/v2"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// Options shape a random cluster.
type Options struct {
	Hosts, VMs int
	// NonReady is the chance that a host is not ready.
	NonReady float64
	// Rules is the chance that a VM has a host rule, an affinity group,
	// an anti-affinity group, CPU features, a dir pool (each drawn apart).
	Rules float64
	// Groups is how many affinity and anti-affinity groups there are.
	Groups int
	// Small makes hosts small, so that capacity binds often.
	Small bool
	// MixedVendors gives some hosts another CPU vendor.
	MixedVendors bool
}

// Features are the CPU features hosts draw from; the first four every
// host has.
var Features = []string{"sse2", "sse4_2", "popcnt", "aes", "avx", "avx2", "avx512f", "sha_ni", "vaes", "amx_tile"}

// Random returns a cluster of o.Hosts hosts, pools, and o.VMs VMs not yet
// placed (Host empty), from rng.
func Random(rng *rand.Rand, o Options) placement.Cluster {
	var c placement.Cluster
	c.Pools = []placement.Pool{{Name: "nfs", Shared: true}, {Name: "ceph", Shared: true}}
	zones, racks := []string{"a", "b", "c"}, []string{"r1", "r2", "r3", "r4"}
	for i := range o.Hosts {
		h := placement.Host{
			Name:      fmt.Sprintf("h%04d", i),
			State:     placement.HostReady,
			CPUs:      []int{8, 16, 32, 64}[rng.IntN(4)],
			MemoryMiB: []uint64{32768, 65536, 131072, 262144}[rng.IntN(4)],
			Labels:    map[string]string{"zone": zones[rng.IntN(3)], "rack": racks[rng.IntN(4)]},
			CPU:       placement.CPU{Vendor: "GenuineIntel", Model: "Skylake", Features: Features[:4]},
		}
		if o.Small {
			h.CPUs, h.MemoryMiB = 1+rng.IntN(4), uint64(1024*(1+rng.IntN(8)))
		}
		if rng.Float64() < o.NonReady {
			h.State = []placement.HostState{placement.HostMaintenance, placement.HostUnreachable,
				placement.HostFenced, placement.HostEnteringMaintenance}[rng.IntN(4)]
		}
		if rng.IntN(3) == 0 {
			h.Labels["ssd"] = "true"
		}
		if rng.IntN(8) == 0 {
			h.Labels["gpu"] = "a100"
		}
		for _, f := range Features[4:] {
			if rng.IntN(2) == 0 {
				h.CPU.Features = append(h.CPU.Features[:len(h.CPU.Features):len(h.CPU.Features)], f)
			}
		}
		if o.MixedVendors && rng.IntN(4) == 0 {
			h.CPU.Vendor = "AuthenticAMD"
		}
		if rng.IntN(3) == 0 {
			c.Pools = append(c.Pools, placement.Pool{Name: "local-" + h.Name, Host: h.Name})
		}
		c.Hosts = append(c.Hosts, h)
	}
	groups := max(o.Groups, 1)
	rules := []string{"must zone=a", "must-not gpu", "must ssd", "should zone=b", "should-not rack=r1", "must rack!=r2,zone!=c", "should ssd"}
	for i := range o.VMs {
		vm := placement.VM{
			Name:      fmt.Sprintf("vm%05d", i),
			CPUs:      []int{1, 1, 2, 2, 4, 8}[rng.IntN(6)],
			MemoryMiB: []uint64{512, 1024, 2048, 4096, 8192}[rng.IntN(5)],
			Pools:     []string{"nfs"},
			HA:        rng.IntN(2) == 0,
			Priority:  rng.IntN(4),
		}
		if o.Small {
			// An odd MiB now and then, so that a limit off by one shows.
			vm.CPUs, vm.MemoryMiB = 1+rng.IntN(2), uint64(256*(1+rng.IntN(8))+rng.IntN(4)/3)
		}
		draw := func() bool { return rng.Float64() < o.Rules }
		if draw() {
			r, _ := placement.ParseHostRule(rules[rng.IntN(len(rules))])
			vm.HostRules = []placement.HostRule{r}
		}
		if draw() {
			vm.Affinity = []string{fmt.Sprintf("aff%d", rng.IntN(groups))}
		}
		if draw() {
			vm.AntiAffinity = []string{fmt.Sprintf("anti%d", rng.IntN(groups))}
		}
		if draw() {
			vm.CPUFeatures = []string{Features[rng.IntN(len(Features))]}
		}
		if draw() && len(c.Pools) > 2 {
			vm.Pools = append(vm.Pools, c.Pools[2+rng.IntN(len(c.Pools)-2)].Name)
		}
		if draw() {
			vm.CPUVendor = "GenuineIntel"
		}
		c.VMs = append(c.VMs, vm)
	}
	return c
}

// Placed returns c with as many of its VMs as fit placed by a fresh
// State (in order), and the number placed; the others keep no host.
func Placed(c placement.Cluster, cfg placement.Config) (placement.Cluster, int, error) {
	s, err := placement.New(placement.Cluster{Hosts: c.Hosts, Pools: c.Pools}, cfg)
	if err != nil {
		return c, 0, err
	}
	out := c
	out.VMs = make([]placement.VM, len(c.VMs))
	n := 0
	for i, vm := range c.VMs {
		if h, err := s.Place(vm); err == nil {
			vm.Host = h
			n++
		}
		out.VMs[i] = vm
	}
	return out, n, nil
}

// Bench returns the benchmark cluster: hosts hosts of 32 CPUs and 64 GiB
// over three zones, and vms VMs (1 to 8 vCPUs, 1 to 8 GiB) on shared
// storage, a tenth with a host rule, a fifth in anti-affinity groups of
// three, a tenth needing avx2: about 60% of the memory once all placed.
func Bench(hosts, vms int) placement.Cluster {
	rng := rand.New(rand.NewPCG(1, 2))
	var c placement.Cluster
	c.Pools = []placement.Pool{{Name: "nfs", Shared: true}}
	for i := range hosts {
		f := Features[:6]
		if i%5 == 0 {
			f = Features[:4]
		}
		c.Hosts = append(c.Hosts, placement.Host{
			Name: fmt.Sprintf("host%04d", i), State: placement.HostReady, CPUs: 32, MemoryMiB: 65536,
			Labels: map[string]string{"zone": string(rune('a' + i%3))},
			CPU:    placement.CPU{Vendor: "GenuineIntel", Features: f},
		})
	}
	for i := range vms {
		vm := placement.VM{
			Name: fmt.Sprintf("vm%06d", i), CPUs: 1 << rng.IntN(4),
			MemoryMiB: uint64(1024 << rng.IntN(4)), Pools: []string{"nfs"}, HA: i%2 == 0,
		}
		if i%10 == 0 {
			vm.HostRules = []placement.HostRule{{Kind: placement.Must, Selector: "zone=" + string(rune('a'+i%3))}}
		}
		if i%5 == 1 {
			vm.AntiAffinity = []string{fmt.Sprintf("anti%d", i/15)}
		}
		if i%10 == 3 {
			vm.CPUFeatures = []string{"avx2"}
		}
		c.VMs = append(c.VMs, vm)
	}
	return c
}
