package agent

import (
	"testing"
	"time"

	"github.com/govisor/govisor/internal/usage"
)

// TestLoadMeter: a load is the CPU time used between two rounds over the
// time between them; VMs new in a round, restarted (counter back to a
// lower value) or not running are left out.
func TestLoadMeter(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	round := func(at time.Time, host, a, b, c float64) []usage.Sample {
		return []usage.Sample{
			{Time: at, CPUSeconds: host, RSSBytes: 3 << 30},
			{Time: at, VM: "a", State: "running", CPUSeconds: a, RSSBytes: 512 << 20},
			{Time: at, VM: "b", State: "running", CPUSeconds: b},
			{Time: at, VM: "c", State: "stopped", CPUSeconds: c},
		}
	}
	var m loadMeter
	if l := m.measure(round(t0, 100, 10, 50, 0)); l != nil {
		t.Fatalf("a load from one round: %+v", l)
	}
	l := m.measure(append(round(t0.Add(10*time.Second), 130, 25, 40, 0), usage.Sample{Time: t0.Add(10 * time.Second), VM: "d", State: "running", CPUSeconds: 5}))
	if l == nil || l.CPUBusy != 3 || l.MemoryUsedMiB != 3072 {
		t.Fatalf("host load %+v, want 3 CPUs busy and 3072 MiB", l)
	}
	if a, ok := l.VMs["a"]; !ok || a.CPUBusy != 1.5 || a.MemoryMiB != 512 {
		t.Errorf("a: %+v", a)
	}
	for _, vm := range []string{"b", "c", "d"} {
		if _, ok := l.VMs[vm]; ok {
			t.Errorf("%s has a load: %+v", vm, l.VMs[vm])
		}
	}
}
