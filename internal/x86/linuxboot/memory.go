package linuxboot

import (
	"fmt"
	"io"
	"sort"
)

const pageSize = 4096

// area is a named guest-physical range [start, end).
type area struct {
	start, end uint64
	name       string
}

// lowAreas are the fixed low-memory areas the VMM or this package owns; the
// kernel and the initrd must not overlap them.
var lowAreas = []area{
	{0x500, 0x600, "GDT/IDT"},
	{PVHStartInfoAddr, BootParamsAddr, "PVH start info"},
	{BootParamsAddr, BootParamsAddr + BootParamsSize, "boot_params"},
	{0x9000, 0xF000, "page tables"},
	{CmdlineAddr, CmdlineAddr + CmdlineMax, "command line"},
	{0x9FC00, 0xA0000, "EBDA (MP table)"},
	{0xE0000, 0x100000, "ACPI tables"},
}

// memMap is the validated guest memory map.
type memMap struct {
	regions []MemRegion // all regions, as given
	ram     []MemRegion // RAM regions sorted by start
}

func newMemMap(regions []MemRegion) (*memMap, error) {
	if len(regions) > MaxE820Entries {
		return nil, fmt.Errorf("linuxboot: memory map has %d entries, the zero page holds %d", len(regions), MaxE820Entries)
	}
	m := &memMap{regions: regions}
	for _, r := range regions {
		if r.Start+r.Size < r.Start {
			return nil, fmt.Errorf("linuxboot: memory region [%#x, +%#x) wraps around", r.Start, r.Size)
		}
		if r.Type == E820RAM && r.Size > 0 {
			m.ram = append(m.ram, r)
		}
	}
	if len(m.ram) == 0 {
		return nil, fmt.Errorf("linuxboot: memory map has no RAM region")
	}
	sort.Slice(m.ram, func(i, j int) bool { return m.ram[i].Start < m.ram[j].Start })
	return m, nil
}

// inRAM reports whether [start, start+size) is covered by RAM regions.
func (m *memMap) inRAM(start, size uint64) bool {
	end := start + size
	if end < start {
		return false
	}
	cur := start
	for cur < end {
		advanced := false
		for _, r := range m.ram {
			if r.Start <= cur && cur < r.End() {
				cur = r.End()
				advanced = true
				break
			}
		}
		if !advanced {
			return false
		}
	}
	return size > 0 || m.contains(start)
}

func (m *memMap) contains(a uint64) bool {
	for _, r := range m.ram {
		if r.Start <= a && a < r.End() {
			return true
		}
	}
	return false
}

// checkKernelRange verifies that a kernel range lies in RAM and clear of the
// fixed low areas.
func (m *memMap) checkKernelRange(start, size uint64, what string) error {
	if !m.inRAM(start, size) {
		return fmt.Errorf("%w: %s [%#x, +%#x) is not inside guest RAM (%s)", ErrNoFit, what, start, size, m.describeRAM())
	}
	if a, ok := overlapsLow(start, size); ok {
		return fmt.Errorf("%w: %s [%#x, +%#x) overlaps the %s area [%#x, %#x)", ErrNoFit, what, start, size, a.name, a.start, a.end)
	}
	return nil
}

func overlapsLow(start, size uint64) (area, bool) {
	for _, a := range lowAreas {
		if start < a.end && a.start < start+size {
			return a, true
		}
	}
	return area{}, false
}

func (m *memMap) describeRAM() string {
	s := "RAM:"
	for _, r := range m.ram {
		s += fmt.Sprintf(" [%#x, %#x)", r.Start, r.End())
	}
	return s
}

// placeInitrd returns the highest page-aligned address where size bytes fit
// in RAM at or above floor, ending at or below ceiling (exclusive), clear of
// the low areas. boot.rst ("initrd_addr_max") and every boot loader put the
// initrd as high as allowed so it stays out of the kernel's way.
func (m *memMap) placeInitrd(size, floor, ceiling uint64) (uint64, error) {
	best, found := uint64(0), false
	for _, r := range m.ram {
		for _, f := range freeParts(max(r.Start, alignUp(floor)), min(r.End(), ceiling)) {
			if f.end-f.start < size {
				continue
			}
			a := (f.end - size) &^ (pageSize - 1)
			if a >= f.start && (!found || a > best) {
				best, found = a, true
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("%w: initrd of %d bytes (%d MiB) does not fit in RAM between the kernel end %#x and %#x (%s); give the VM more memory",
			ErrNoFit, size, (size+(1<<20)-1)>>20, floor, ceiling, m.describeRAM())
	}
	return best, nil
}

// freeParts splits [lo, hi) around the low areas.
func freeParts(lo, hi uint64) []area {
	if lo >= hi {
		return nil
	}
	parts := []area{{lo, hi, ""}}
	for _, a := range lowAreas {
		var next []area
		for _, p := range parts {
			if a.end <= p.start || p.end <= a.start {
				next = append(next, p)
				continue
			}
			if p.start < a.start {
				next = append(next, area{p.start, a.start, ""})
			}
			if a.end < p.end {
				next = append(next, area{a.end, p.end, ""})
			}
		}
		parts = next
	}
	return parts
}

func alignUp(a uint64) uint64 {
	if a > ^uint64(0)-(pageSize-1) {
		return ^uint64(0) &^ (pageSize - 1)
	}
	return (a + pageSize - 1) &^ (pageSize - 1)
}

// writeAt writes data at a GPA, naming what it writes in errors.
func writeAt(mem io.WriterAt, addr uint64, data []byte, what string) error {
	if len(data) == 0 {
		return nil
	}
	if addr > 1<<62 {
		return fmt.Errorf("linuxboot: write %s at %#x: address out of range", what, addr)
	}
	n, err := mem.WriteAt(data, int64(addr))
	if err == nil && n != len(data) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("linuxboot: write %s (%d bytes) at %#x: %w", what, len(data), addr, err)
	}
	return nil
}

// zeroAt writes n zero bytes at a GPA in bounded chunks.
func zeroAt(mem io.WriterAt, addr, n uint64, what string) error {
	zeros := make([]byte, min(n, 1<<16))
	for n > 0 {
		c := min(n, uint64(len(zeros)))
		if err := writeAt(mem, addr, zeros[:c], what); err != nil {
			return err
		}
		addr += c
		n -= c
	}
	return nil
}
