package vm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestExitsByReason runs guests that make known numbers of port and MMIO
// accesses and checks the per-reason counts.
func TestExitsByReason(t *testing.T) {
	const mmioBase, port = 0xD0000000, 0x510
	tests := []struct{ outs, mmios int }{{0, 0}, {5, 0}, {3, 4}}
	for _, tt := range tests {
		var a kvmtest.Asm
		a.MovDX(port)
		for i := 0; i < tt.outs; i++ {
			a.OutEAX()
		}
		for i := 0; i < tt.mmios; i++ {
			a.MovRAX(mmioBase).StoreImm32AtRAX(uint32(i))
		}
		a.Exit(0)
		m := newFlat(t, 1, a.B, nil)
		if err := m.RegisterMMIO(mmioBase, 0x1000, &recorder{}); err != nil {
			t.Fatal(err)
		}
		if err := m.RegisterPIO(port, 4, &recorder{}); err != nil {
			t.Fatal(err)
		}
		if ex := m.Run(); ex.Reason != ExitDebug || ex.Code != 0 {
			t.Fatalf("exit = %+v %v", ex, ex.Err)
		}
		got := m.ExitsByReason()
		// The debug-exit write is one more port access.
		if got["IO"] != uint64(tt.outs+1) || got["MMIO"] != uint64(tt.mmios) {
			t.Errorf("%d outs, %d MMIO writes: exits by reason %v", tt.outs, tt.mmios, got)
		}
		var sum, total uint64
		for _, n := range got {
			sum += n
		}
		for _, n := range m.Exits() {
			total += n
		}
		if sum != total {
			t.Errorf("exits by reason sum to %d, exits per vCPU to %d", sum, total)
		}
	}
}

func TestExitReasonName(t *testing.T) {
	tests := []struct {
		reason uint32
		want   string
	}{
		{kvm.ExitIO, "IO"}, {kvm.ExitMMIO, "MMIO"}, {kvm.ExitHLT, "HLT"}, {kvm.ExitInternalError, "INTERNAL_ERROR"},
		{30, "REASON_30"}, {exitReasonSlots - 1, "OTHER"}, {1 << 20, "OTHER"},
	}
	for _, tt := range tests {
		if got := ExitReasonName(tt.reason); got != tt.want {
			t.Errorf("ExitReasonName(%d) = %q, want %q", tt.reason, got, tt.want)
		}
	}
}

// TestDiskStatsNames checks that disks are reported in --disk order under
// the names the guest gives them.
func TestDiskStatsNames(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	var disks []Disk
	for _, name := range []string{"a.raw", "b.raw"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		disks = append(disks, Disk{Path: p})
	}
	var a kvmtest.Asm
	a.Exit(0)
	m, err := New(Config{CPUs: 1, MemoryMiB: 64, Flat: &Flat{Code: a.B, Addr: flatAddr}, DebugExit: true, Disks: disks})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got := m.DiskStats()
	if len(got) != 2 || got[0].Name != "vda" || got[0].Path != disks[0].Path || got[1].Name != "vdb" || got[1].Path != disks[1].Path {
		t.Fatalf("DiskStats = %+v", got)
	}
	if got[0].ReadOps != 0 || got[1].WriteOps != 0 {
		t.Errorf("an idle disk has counts: %+v", got)
	}
	if n := m.NetStats(); len(n) != 0 {
		t.Errorf("NetStats without --net = %+v", n)
	}
}
