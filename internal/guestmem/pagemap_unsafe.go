package guestmem

import (
	"encoding/binary"
	"os"
	"unsafe"
)

// Page-map entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pagemapPresent = 1 << 63
	pagemapSwapped = 1 << 62
)

// NeverWritten returns, for region i, a bitmap of the pages that have never
// been populated: for the anonymous private memory New maps, such a page
// reads as zero, so migration need not read or send it. It returns nil when
// it cannot tell (memory not made by New, e.g. mapped from a snapshot file,
// or /proc/self/pagemap unreadable).
func (m *Memory) NeverWritten(i int) []uint64 {
	if !m.anonymous || i < 0 || i >= len(m.regions) {
		return nil
	}
	r := m.regions[i]
	if len(r.Host) == 0 {
		return nil
	}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil
	}
	defer f.Close()
	// SAFETY: only the address of the mapping is taken, to index pagemap;
	// the mapping stays alive while m is open.
	base := uint64(uintptr(unsafe.Pointer(&r.Host[0])))
	pages := uint64(len(r.Host)) / PageSize
	out := make([]uint64, (pages+63)/64)
	buf := make([]byte, 8*4096)
	for p := uint64(0); p < pages; {
		n := min(pages-p, uint64(len(buf)/8))
		if _, err := f.ReadAt(buf[:n*8], int64((base/PageSize+p)*8)); err != nil {
			return nil
		}
		for j := uint64(0); j < n; j++ {
			if e := binary.LittleEndian.Uint64(buf[j*8:]); e&(pagemapPresent|pagemapSwapped) == 0 {
				out[(p+j)/64] |= 1 << ((p + j) % 64)
			}
		}
		p += n
	}
	return out
}
