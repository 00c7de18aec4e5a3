package placement_test

import (
	"testing"

	. "github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/placement/placementtest"
)

// BenchmarkPlace10kOn1k places the benchmark cluster's 10,000 VMs one by
// one onto its 1,000 hosts (one op = the whole cluster); go run
// ./bench/placement prints the same figure.
func BenchmarkPlace10kOn1k(b *testing.B) {
	for _, st := range []Strategy{Spread, Pack} {
		b.Run(string(st), func(b *testing.B) {
			c := placementtest.Bench(1000, 10000)
			b.ReportAllocs()
			for b.Loop() {
				s, err := New(Cluster{Hosts: c.Hosts, Pools: c.Pools}, Config{Strategy: st})
				if err != nil {
					b.Fatal(err)
				}
				for _, vm := range c.VMs {
					if _, err := s.Place(vm); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/VM")
		})
	}
}

// BenchmarkChoose is one placement decision on a 1,000-host cluster
// holding 10,000 VMs.
func BenchmarkChoose(b *testing.B) {
	c := placementtest.Bench(1000, 10000)
	c, _, err := placementtest.Placed(c, Config{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(c, Config{})
	if err != nil {
		b.Fatal(err)
	}
	vm := VM{Name: "new", CPUs: 2, MemoryMiB: 4096, Pools: []string{"nfs"}, AntiAffinity: []string{"anti1"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Choose(vm); err != nil {
			b.Fatal(err)
		}
	}
}
