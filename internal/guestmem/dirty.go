package guestmem

import (
	"sync/atomic"
)

// PageSize is the granularity of dirty tracking.
const PageSize = 4096

// dirtyBitmap has one bit per guest page of a region. KVM's dirty log only
// sees vCPU writes; device code that writes guest memory (virtio used rings,
// block reads, network receive) marks pages here so live migration resends them.
type dirtyBitmap struct {
	words []atomic.Uint64
}

func (m *Memory) ensureDirty() {
	m.dirtyOnce.Do(func() {
		m.dirty = make([]dirtyBitmap, len(m.regions))
		for i, r := range m.regions {
			pages := (uint64(len(r.Host)) + PageSize - 1) / PageSize
			m.dirty[i].words = make([]atomic.Uint64, (pages+63)/64)
		}
	})
}

// MarkDirty records that the VMM wrote guest memory [gpa, gpa+n). Addresses
// outside RAM are ignored. Safe for concurrent use.
func (m *Memory) MarkDirty(gpa, n uint64) {
	if n == 0 {
		return
	}
	m.ensureDirty()
	for i, r := range m.regions {
		size := uint64(len(r.Host))
		if gpa < r.GPA || gpa-r.GPA >= size {
			continue
		}
		first := (gpa - r.GPA) / PageSize
		end := gpa - r.GPA + n
		if end > size || end < n {
			end = size
		}
		last := (end - 1) / PageSize
		for p := first; p <= last; p++ {
			w := &m.dirty[i].words[p/64]
			bit := uint64(1) << (p % 64)
			if w.Load()&bit == 0 {
				w.Or(bit)
			}
		}
		return
	}
}

// TakeDirty returns, per region, the bitmap of pages the VMM marked dirty
// since the last call (bit p of word p/64 = page p of the region) and clears it.
func (m *Memory) TakeDirty() [][]uint64 {
	m.ensureDirty()
	out := make([][]uint64, len(m.dirty))
	for i := range m.dirty {
		out[i] = make([]uint64, len(m.dirty[i].words))
		for j := range m.dirty[i].words {
			out[i][j] = m.dirty[i].words[j].Swap(0)
		}
	}
	return out
}
