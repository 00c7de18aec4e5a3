package balance_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	. "github.com/govisor/govisor/internal/cluster/balance"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/placement/placementtest"
)

// skewed is the benchmark cluster of placementtest.Bench, placed, with a
// tenth of the hosts busy and the rest nearly idle.
func skewed(hosts, vms int) Cluster {
	pc, _, _ := placementtest.Placed(placementtest.Bench(hosts, vms), placement.Config{})
	rng := rand.New(rand.NewPCG(3, 4))
	c := Cluster{Hosts: pc.Hosts, Pools: pc.Pools}
	for _, vm := range pc.VMs {
		load := 0.05 * rng.Float64() * float64(vm.CPUs)
		var n int
		fmt.Sscanf(vm.Host, "host%d", &n)
		if n%10 == 0 {
			load = float64(vm.CPUs) * (0.6 + 0.4*rng.Float64())
		}
		c.VMs = append(c.VMs, VM{VM: vm, CPULoad: load})
	}
	return c
}

// BenchmarkRebalance plans one wave (at most 8 migrations per host) on
// skewed clusters.
func BenchmarkRebalance(b *testing.B) {
	for _, size := range []struct{ hosts, vms int }{{10, 100}, {100, 1000}, {1000, 10000}} {
		c := skewed(size.hosts, size.vms)
		b.Run(fmt.Sprintf("%dhosts", size.hosts), func(b *testing.B) {
			var p Plan
			for b.Loop() {
				var err error
				if p, err = Rebalance(c, Options{MaxMoves: 64}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(p.Moves)), "moves")
			b.ReportMetric(p.Before, "imb-before")
			b.ReportMetric(p.After, "imb-after")
		})
	}
}
