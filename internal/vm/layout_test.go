package vm

import (
	"testing"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/x86/linuxboot"
)

// A guest with more RAM than fits below the PCI hole gets the rest above
// 4 GiB, and the e820 map says so.
func TestMemorySplitAroundPCIHole(t *testing.T) {
	kvmtest.Require(t)
	var a kvmtest.Asm
	a.Exit(0)
	for _, c := range []struct {
		mib      uint64
		regions  int
		highSize uint64
	}{
		{64, 1, 0},
		{3072, 1, 0},
		{4096, 2, 1 << 30},
	} {
		m, err := New(Config{CPUs: 1, MemoryMiB: c.mib, Flat: &Flat{Code: a.B, Addr: flatAddr}})
		if err != nil {
			t.Fatal(err)
		}
		regs := m.Memory().Regions()
		if len(regs) != c.regions {
			t.Fatalf("%d MiB: %d regions, want %d", c.mib, len(regs), c.regions)
		}
		if c.highSize > 0 && (regs[1].GPA != highMemStart || uint64(len(regs[1].Host)) != c.highSize) {
			t.Errorf("%d MiB: high region %#x+%#x", c.mib, regs[1].GPA, len(regs[1].Host))
		}
		var ram uint64
		for _, e := range m.e820() {
			if e.Type == linuxboot.E820RAM {
				ram += e.Size
				if e.Start < pciHoleStart && e.Start+e.Size > pciHoleStart {
					t.Errorf("e820 RAM %#x+%#x overlaps the PCI hole", e.Start, e.Size)
				}
			}
		}
		// The EBDA and the BIOS area (MP and ACPI tables) are not RAM.
		if want := c.mib<<20 - (0xA0000 - 0x9FC00) - (0x100000 - 0xA0000); ram != want {
			t.Errorf("%d MiB: e820 RAM %#x, want %#x", c.mib, ram, want)
		}
		m.Close()
	}
}
