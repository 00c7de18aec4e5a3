package qcow2

import (
	"container/list"
	"encoding/binary"
	"fmt"
)

// l2Table is one cached L2 table ("Cluster mapping"): the standard 64-bit
// entries, and with extended L2 entries the 64-bit subcluster bitmaps.
type l2Table struct {
	off   uint64
	e     []uint64
	bm    []uint64 // nil unless extended L2
	dirty bool
	elem  *list.Element
}

// l2Cache keeps recently used L2 tables; callers hold Image.mu.
type l2Cache struct {
	max    int
	tables map[uint64]*l2Table
	lru    *list.List // front = most recent
}

func newL2Cache(clusterSize int64) *l2Cache {
	return &l2Cache{max: max(16, int((32<<20)/clusterSize)), tables: map[uint64]*l2Table{}, lru: list.New()}
}

// loadL2 returns the L2 table at off, reading it on a miss. Evicting a
// dirty table first flushes the image, so that the table is never written
// before the data and refcounts it depends on.
func (m *Image) loadL2(off uint64) (*l2Table, error) {
	c := m.l2
	if t, ok := c.tables[off]; ok {
		c.lru.MoveToFront(t.elem)
		return t, nil
	}
	if err := m.evictL2(); err != nil {
		return nil, err
	}
	buf := make([]byte, m.cs)
	if err := readFull(m.f, buf, int64(off)); err != nil {
		return nil, fmt.Errorf("qcow2: read L2 table at %#x: %w", off, err)
	}
	t := m.decodeL2(off, buf)
	t.elem = c.lru.PushFront(t)
	c.tables[off] = t
	return t, nil
}

// newL2 caches a fresh all-unallocated table for a cluster at off.
func (m *Image) newL2(off uint64) (*l2Table, error) {
	if err := m.evictL2(); err != nil {
		return nil, err
	}
	t := m.decodeL2(off, make([]byte, m.cs))
	t.dirty = true
	t.elem = m.l2.lru.PushFront(t)
	m.l2.tables[off] = t
	return t, nil
}

func (m *Image) evictL2() error {
	c := m.l2
	for len(c.tables) >= c.max {
		t := c.lru.Back().Value.(*l2Table)
		if t.dirty {
			if err := m.flushLocked(); err != nil {
				return err
			}
		}
		c.lru.Remove(t.elem)
		delete(c.tables, t.off)
	}
	return nil
}

func (m *Image) decodeL2(off uint64, buf []byte) *l2Table {
	be := binary.BigEndian
	t := &l2Table{off: off, e: make([]uint64, m.l2Entries)}
	if m.extL2 {
		t.bm = make([]uint64, m.l2Entries)
		for i := range t.e {
			t.e[i] = be.Uint64(buf[16*i:])
			t.bm[i] = be.Uint64(buf[16*i+8:])
		}
		return t
	}
	for i := range t.e {
		t.e[i] = be.Uint64(buf[8*i:])
	}
	return t
}

func (m *Image) encodeL2(t *l2Table) []byte {
	be := binary.BigEndian
	buf := make([]byte, m.cs)
	for i, e := range t.e {
		if m.extL2 {
			be.PutUint64(buf[16*i:], e)
			be.PutUint64(buf[16*i+8:], t.bm[i])
		} else {
			be.PutUint64(buf[8*i:], e)
		}
	}
	return buf
}

// writeDirtyL2 writes every dirty cached L2 table and reports whether any was.
func (m *Image) writeDirtyL2() (bool, error) {
	wrote := false
	for _, t := range m.l2.tables {
		if !t.dirty {
			continue
		}
		if _, err := m.f.WriteAt(m.encodeL2(t), int64(t.off)); err != nil {
			return wrote, fmt.Errorf("qcow2: write L2 table at %#x: %w", t.off, err)
		}
		t.dirty, wrote = false, true
	}
	return wrote, nil
}
