package qcow2

import (
	"fmt"

	"github.com/govisor/govisor/internal/diskimage"
)

// Resize grows the virtual size to size bytes. A larger L1 table, when
// needed, is written to new clusters before the header switches to it, and
// the old one is freed only afterwards.
func (m *Image) Resize(size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ro {
		return ErrReadOnlyImage
	}
	if size < int64(m.h.size) {
		return fmt.Errorf("%w: shrinking a qcow2 image", errUnsupported)
	}
	if size > maxVirtualSize {
		return fmt.Errorf("qcow2: size %d too large", size)
	}
	if err := m.flushLocked(); err != nil {
		return err
	}
	span := uint64(m.cs) * m.l2Entries
	need := (uint64(size) + span - 1) / span
	if need*8 > maxL1Bytes {
		return fmt.Errorf("qcow2: size %d needs an L1 table over %d bytes", size, maxL1Bytes)
	}
	if need > uint64(len(m.l1)) {
		clusters := (need*8 + uint64(m.cs) - 1) / uint64(m.cs)
		off, err := m.allocClusters(int64(clusters))
		if err != nil {
			return err
		}
		if m.h.l1Size > 0 {
			m.oldL1 = &extent{off: m.h.l1Off, n: (uint64(m.h.l1Size)*8 + uint64(m.cs) - 1) / uint64(m.cs)}
		}
		m.l1 = append(m.l1, make([]uint64, need-uint64(len(m.l1)))...)
		m.h.l1Off, m.h.l1Size = off, uint32(need)
	}
	m.h.size = uint64(size)
	m.l1Dirty, m.l1Moved = true, true
	return m.flushLocked()
}

var _ diskimage.Resizer = (*Image)(nil)
var _ diskimage.Checker = (*Image)(nil)
var _ diskimage.Mapper = (*Image)(nil)
var _ diskimage.CompressedWriter = (*Image)(nil)
var _ diskimage.Infoer = (*Image)(nil)
