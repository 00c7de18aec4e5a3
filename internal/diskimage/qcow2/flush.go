package qcow2

import (
	"encoding/binary"
	"fmt"
)

// Flush makes every acknowledged write durable, writing metadata in
// dependency order (see the package comment).
func (m *Image) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flushLocked()
}

func (m *Image) sync() error {
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("qcow2: %s: %w", m.path, err)
	}
	return nil
}

func (m *Image) flushLocked() error {
	if m.ro || m.closed {
		return nil
	}
	// 1. Refcount blocks, with the data: both must be durable before any
	// table points at them. Under lazy refcounts they wait for Close.
	needSync := m.dataDirty
	if !m.lazy {
		wrote, err := m.writeDirtyRefs()
		if err != nil {
			return err
		}
		needSync = needSync || wrote
	}
	if needSync {
		if err := m.sync(); err != nil {
			return err
		}
		m.dataDirty = false
	}
	// 2. The refcount table, then the header pointing at a moved one.
	if !m.lazy && m.rtDirty {
		if err := m.writeRefTable(); err != nil {
			return err
		}
		if err := m.sync(); err != nil {
			return err
		}
		if m.rtMoved {
			var b [12]byte
			binary.BigEndian.PutUint64(b[:], m.h.rtOff)
			binary.BigEndian.PutUint32(b[8:], m.h.rtClusters)
			if err := m.writeHeaderBytes(offRefTable, b[:]); err != nil {
				return err
			}
			m.rtMoved = false
			if m.oldRT != nil {
				for i := uint64(0); i < m.oldRT.n; i++ {
					m.pendingFree = append(m.pendingFree, m.oldRT.off+i<<m.h.clusterBits)
				}
				m.oldRT = nil
			}
		}
		m.rtDirty = false
	}
	// 3. L2 tables.
	wrote, err := m.writeDirtyL2()
	if err != nil {
		return err
	}
	if wrote {
		if err := m.sync(); err != nil {
			return err
		}
	}
	// 4. The L1 table, then the header if it moved (resize).
	if err := m.writeL1(); err != nil {
		return err
	}
	// 5. Only now may freed clusters lose their references.
	if len(m.pendingFree) > 0 {
		for _, c := range m.pendingFree {
			if err := m.addRef(c, -1); err != nil {
				return err
			}
		}
		m.pendingFree = m.pendingFree[:0]
		if !m.lazy {
			if _, err := m.writeDirtyRefs(); err != nil {
				return err
			}
			return m.sync()
		}
	}
	return nil
}

func (m *Image) writeL1() error {
	if !m.l1Dirty {
		return nil
	}
	buf := make([]byte, len(m.l1)*8)
	for i, v := range m.l1 {
		binary.BigEndian.PutUint64(buf[8*i:], v)
	}
	if _, err := m.f.WriteAt(buf, int64(m.h.l1Off)); err != nil {
		return fmt.Errorf("qcow2: write L1 table at %#x: %w", m.h.l1Off, err)
	}
	if err := m.sync(); err != nil {
		return err
	}
	if m.l1Moved {
		// size, l1_size and l1_table_offset are adjacent (24..48): one write.
		var b [24]byte
		binary.BigEndian.PutUint64(b[0:], m.h.size)
		binary.BigEndian.PutUint32(b[12:], m.h.l1Size)
		binary.BigEndian.PutUint64(b[16:], m.h.l1Off)
		binary.BigEndian.PutUint32(b[8:], m.h.cryptMethod)
		if err := m.writeHeaderBytes(offSize, b[:]); err != nil {
			return err
		}
		m.l1Moved = false
		if m.oldL1 != nil {
			for i := uint64(0); i < m.oldL1.n; i++ {
				m.pendingFree = append(m.pendingFree, m.oldL1.off+i<<m.h.clusterBits)
			}
			m.oldL1 = nil
		}
	}
	m.l1Dirty = false
	return nil
}
