// Command placement measures the cluster's pure decision logic at scale:
// placement throughput (a cluster of 1,000 hosts of 32 CPUs and 64 GiB
// over three zones takes 10,000 VMs placed one by one, each placement
// updating the allocations; a tenth with a host rule, a fifth in
// anti-affinity groups, a tenth needing a CPU feature), spread and pack,
// best and median of -n runs; then, on the placed cluster, the HA batch of
// the fullest host, one admission decision, and one balance plan after a
// tenth of the hosts turn busy.
//
// Usage: go run ./bench/placement [-hosts 1000] [-vms 10000] [-n 5]
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/govisor/govisor/internal/cluster/admission"
	"github.com/govisor/govisor/internal/cluster/balance"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/placement/placementtest"
)

func main() {
	hosts := flag.Int("hosts", 1000, "hosts in the cluster")
	vms := flag.Int("vms", 10000, "VMs to place")
	n := flag.Int("n", 5, "runs (the best and the median are printed)")
	flag.Parse()
	c := placementtest.Bench(*hosts, *vms)
	fmt.Printf("placement: %d VMs onto %d hosts, one by one, %d runs\n", *vms, *hosts, *n)
	var spread *placement.State
	for _, st := range []placement.Strategy{placement.Spread, placement.Pack} {
		var times []time.Duration
		var s *placement.State
		for range *n {
			var err error
			if s, err = placement.New(placement.Cluster{Hosts: c.Hosts, Pools: c.Pools}, placement.Config{Strategy: st}); err != nil {
				fail(err)
			}
			start := time.Now()
			for _, vm := range c.VMs {
				if _, err := s.Place(vm); err != nil {
					fail(err)
				}
			}
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		best, med := times[0], times[len(times)/2]
		fmt.Printf("  %-6s best %7.1f ms  median %7.1f ms  %8.0f VMs/s  (%.1f µs per VM, %d hosts in use)\n",
			st, ms(best), ms(med), float64(*vms)/best.Seconds(), float64(best.Nanoseconds())/1000/float64(*vms), inUse(s))
		if st == placement.Spread {
			spread = s
		}
	}
	haBatch(spread.Clone())
	admit(spread)
	rebalance(spread)
}

// haBatch fails the host with the most HA memory and times the batch
// placement of its HA VMs onto the others.
func haBatch(s *placement.State) {
	worst := admission.Demands(s)[0].Host
	var ha []placement.VM
	for _, vm := range s.VMsOn(worst) {
		if vm.HA {
			ha = append(ha, vm)
		}
	}
	s.SetHostState(worst, placement.HostFenced)
	start := time.Now()
	res := s.PlaceBatch(ha)
	fmt.Printf("HA restart batch of %s (the largest host): %d VMs placed, %d refused, in %.2f ms\n",
		worst, len(res.Placed), len(res.Failed), ms(time.Since(start)))
}

// admit times one admission decision: placement, then the simulated
// failure of the largest host.
func admit(s *placement.State) {
	vm := placement.VM{Name: "new", CPUs: 2, MemoryMiB: 4096, Pools: []string{"nfs"}, HA: true}
	start := time.Now()
	d, err := admission.Admit(s, vm, admission.Options{})
	if err != nil {
		fail(err)
	}
	fmt.Printf("admission of one VM (placement + the largest host's failover): allowed %v on %s, in %.2f ms\n",
		d.Allowed, d.Host, ms(time.Since(start)))
}

// rebalance makes a tenth of the hosts busy and times one balance plan.
func rebalance(s *placement.State) {
	rng := rand.New(rand.NewPCG(3, 4))
	c := balance.Cluster{Hosts: s.Hosts()}
	c.Pools = []placement.Pool{{Name: "nfs", Shared: true}}
	busy := map[string]bool{}
	for i, h := range c.Hosts {
		busy[h.Name] = i%10 == 0
	}
	for _, vm := range s.VMs() {
		load := 0.05 * rng.Float64() * float64(vm.CPUs)
		if busy[vm.Host] {
			load = float64(vm.CPUs) * (0.6 + 0.4*rng.Float64())
		}
		c.VMs = append(c.VMs, balance.VM{VM: vm, CPULoad: load})
	}
	for _, max := range []int{64, 0} {
		start := time.Now()
		p, err := balance.Rebalance(c, balance.Options{MaxMoves: max})
		if err != nil {
			fail(err)
		}
		limit := "no move limit"
		if max > 0 {
			limit = fmt.Sprintf("at most %d moves", max)
		}
		fmt.Printf("balance plan (a tenth of the hosts busy, %s): imbalance %.2f -> %.2f with %d migrations, in %.1f ms\n",
			limit, p.Before, p.After, len(p.Moves), ms(time.Since(start)))
	}
}

// inUse counts the hosts that took a VM.
func inUse(s *placement.State) int {
	n := 0
	for _, h := range s.Hosts() {
		if u, _ := s.Usage(h.Name); u.MemoryMiB > 0 {
			n++
		}
	}
	return n
}

// ms is a duration in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// fail prints err and exits.
func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
