package admission_test

import (
	"testing"

	. "github.com/govisor/govisor/internal/cluster/admission"
	"github.com/govisor/govisor/internal/cluster/placement"
	"github.com/govisor/govisor/internal/cluster/placement/placementtest"
)

// BenchmarkAdmit is one admission decision on the placed benchmark
// cluster (1,000 hosts, 10,000 VMs).
func BenchmarkAdmit(b *testing.B) {
	c, _, err := placementtest.Placed(placementtest.Bench(1000, 10000), placement.Config{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := placement.New(c, placement.Config{})
	if err != nil {
		b.Fatal(err)
	}
	vm := placement.VM{Name: "new", CPUs: 2, MemoryMiB: 4096, Pools: []string{"nfs"}, HA: true}
	b.ReportAllocs()
	for b.Loop() {
		if d, err := Admit(s, vm, Options{}); err != nil || !d.Allowed {
			b.Fatal(d, err)
		}
	}
}
