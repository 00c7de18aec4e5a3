package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Refcounts ("Host cluster management"): a refcount table of 64-bit
// offsets of refcount blocks, each block an array of refcount_bits-wide
// counters, one per host cluster.

const rtOffMask = 0xfffffffffffffe00 // refcount table entry bits 9-63

// ErrRefcountOverflow reports a cluster whose refcount would exceed refcount_bits.
var ErrRefcountOverflow = errors.New("qcow2: refcount overflow")

// refBlock is one cached refcount block.
type refBlock struct {
	off   uint64
	buf   []byte
	dirty bool
}

// getRef reads entry i of a refcount block of the given order; entries
// narrower than a byte are packed from the low bits up, as qemu does.
func getRef(b []byte, i uint64, order uint32) uint64 {
	be := binary.BigEndian
	switch order {
	case 3:
		return uint64(b[i])
	case 4:
		return uint64(be.Uint16(b[2*i:]))
	case 5:
		return uint64(be.Uint32(b[4*i:]))
	case 6:
		return be.Uint64(b[8*i:])
	}
	bits := uint64(1) << order
	bit := i * bits
	return uint64(b[bit/8]>>(bit%8)) & (1<<bits - 1)
}

func setRef(b []byte, i uint64, order uint32, v uint64) {
	be := binary.BigEndian
	switch order {
	case 3:
		b[i] = byte(v)
	case 4:
		be.PutUint16(b[2*i:], uint16(v))
	case 5:
		be.PutUint32(b[4*i:], uint32(v))
	case 6:
		be.PutUint64(b[8*i:], v)
	default:
		bits := uint64(1) << order
		bit := i * bits
		mask := byte((1<<bits - 1) << (bit % 8))
		b[bit/8] = b[bit/8]&^mask | byte(v<<(bit%8))&mask
	}
}

// loadRefTable reads the refcount table (its size is bounded by
// parseHeader against the file size and qemu's limit).
func (m *Image) loadRefTable() error {
	buf := make([]byte, uint64(m.h.rtClusters)<<m.h.clusterBits)
	if err := readFull(m.f, buf, int64(m.h.rtOff)); err != nil {
		return fmt.Errorf("qcow2: read refcount table at %#x: %w", m.h.rtOff, err)
	}
	m.rt = make([]uint64, len(buf)/8)
	for i := range m.rt {
		m.rt[i] = binary.BigEndian.Uint64(buf[8*i:])
	}
	// Every refcount block is a distinct cluster of the file: more table
	// entries than file clusters is corruption, and the limit also bounds
	// the memory the block cache can take.
	size, err := m.f.Size()
	if err != nil {
		return fmt.Errorf("qcow2: size of %s: %w", m.path, err)
	}
	used := 0
	for _, e := range m.rt {
		if e&rtOffMask != 0 {
			used++
		}
	}
	if int64(used) > size/m.cs+1 {
		return fmt.Errorf("%w: %d refcount blocks in a %d-byte file", errCorrupt, used, size)
	}
	m.rb = map[uint64]*refBlock{}
	return nil
}

// refBlockFor returns the refcount block covering host cluster index c, or
// nil if none is allocated.
func (m *Image) refBlockFor(c uint64) (*refBlock, error) {
	ti := c / m.rbEntries
	if ti >= uint64(len(m.rt)) {
		return nil, nil
	}
	if b, ok := m.rb[ti]; ok {
		return b, nil
	}
	off := m.rt[ti] & rtOffMask
	if off == 0 {
		return nil, nil
	}
	if off%uint64(m.cs) != 0 {
		return nil, fmt.Errorf("%w: refcount block at unaligned offset %#x", errCorrupt, off)
	}
	b := &refBlock{off: off, buf: make([]byte, m.cs)}
	if err := readFull(m.f, b.buf, int64(off)); err != nil {
		return nil, fmt.Errorf("qcow2: read refcount block at %#x: %w", off, err)
	}
	m.rb[ti] = b
	return b, nil
}

// refcount returns the refcount of the host cluster at offset host.
func (m *Image) refcount(host uint64) (uint64, error) {
	c := host >> m.h.clusterBits
	b, err := m.refBlockFor(c)
	if err != nil || b == nil {
		return 0, err
	}
	return getRef(b.buf, c%m.rbEntries, m.h.refcountOrder), nil
}

// addRef adds delta to the refcount of the host cluster at offset host,
// allocating a refcount block (and growing the table) when needed.
func (m *Image) addRef(host uint64, delta int64) error {
	c := host >> m.h.clusterBits
	ti := c / m.rbEntries
	if ti >= uint64(len(m.rt)) {
		if err := m.growRefTable(ti); err != nil {
			return err
		}
	}
	b, err := m.refBlockFor(c)
	if err != nil {
		return err
	}
	if b == nil {
		// A new block goes at the end of the file; it is written before
		// the table entry pointing at it (flushLocked) and counts itself.
		off := uint64(m.hostEnd)
		m.hostEnd += m.cs
		b = &refBlock{off: off, buf: make([]byte, m.cs), dirty: true}
		m.rb[ti] = b
		m.rt[ti] = off
		m.rtDirty = true
		if err := m.addRef(off, 1); err != nil {
			return err
		}
	}
	i := c % m.rbEntries
	old := getRef(b.buf, i, m.h.refcountOrder)
	nv := int64(old) + delta
	if nv < 0 || (m.h.refcountOrder < 6 && uint64(nv) >= 1<<(1<<m.h.refcountOrder)) {
		return fmt.Errorf("%w: cluster %#x refcount %d%+d", ErrRefcountOverflow, host, old, delta)
	}
	setRef(b.buf, i, m.h.refcountOrder, uint64(nv))
	b.dirty = true
	return nil
}

// growRefTable makes the in-memory refcount table cover index ti and
// moves it to new clusters at the end of the file; flushLocked writes it
// and then switches the header to it.
func (m *Image) growRefTable(ti uint64) error {
	n := max(ti+1, uint64(len(m.rt))*3/2)
	perCluster := uint64(m.cs) / 8
	clusters := (n + perCluster - 1) / perCluster
	// The new table and the blocks it needs for itself must fit too.
	clusters += 1 + clusters/perCluster
	if clusters<<m.h.clusterBits > maxRefTableBytes {
		return fmt.Errorf("qcow2: refcount table would exceed %d bytes", maxRefTableBytes)
	}
	prevOff, prevN, wasMoved := m.h.rtOff, uint64(m.h.rtClusters), m.rtMoved
	newOff := uint64(m.hostEnd)
	m.hostEnd += int64(clusters) << m.h.clusterBits
	m.rt = append(m.rt, make([]uint64, clusters*perCluster-uint64(len(m.rt)))...)
	m.h.rtOff, m.h.rtClusters = newOff, uint32(clusters)
	m.rtMoved, m.rtDirty = true, true
	if wasMoved {
		// The previous new table never reached the disk: drop it now.
		for i := uint64(0); i < prevN; i++ {
			if err := m.addRef(prevOff+i<<m.h.clusterBits, -1); err != nil {
				return err
			}
		}
	} else {
		// The table on disk is freed once the header points elsewhere.
		m.oldRT = &extent{off: prevOff, n: prevN}
	}
	for i := uint64(0); i < clusters; i++ {
		if err := m.addRef(newOff+i<<m.h.clusterBits, 1); err != nil {
			return err
		}
	}
	return nil
}

// extent is a run of host clusters.
type extent struct{ off, n uint64 }

// allocClusters reserves n contiguous host clusters at the end of the file
// and counts one reference to each. Clusters freed during a session are
// never reused in it, so a reference still on disk to a freed cluster can
// never see it overwritten before the referencing metadata is updated.
func (m *Image) allocClusters(n int64) (uint64, error) {
	for {
		off := uint64(m.hostEnd)
		m.hostEnd += n * m.cs
		busy := false
		for i := int64(0); i < n; i++ {
			rc, err := m.refcount(off + uint64(i*m.cs))
			if err != nil {
				return 0, err
			}
			busy = busy || rc != 0
		}
		if busy {
			continue // preallocated space past EOF: skip it
		}
		for i := int64(0); i < n; i++ {
			if err := m.addRef(off+uint64(i*m.cs), 1); err != nil {
				return 0, err
			}
		}
		return off, nil
	}
}

// writeDirtyRefs writes dirty refcount blocks and reports whether any was.
func (m *Image) writeDirtyRefs() (bool, error) {
	wrote := false
	for _, b := range m.rb {
		if !b.dirty {
			continue
		}
		if _, err := m.f.WriteAt(b.buf, int64(b.off)); err != nil {
			return wrote, fmt.Errorf("qcow2: write refcount block at %#x: %w", b.off, err)
		}
		b.dirty, wrote = false, true
	}
	return wrote, nil
}

// writeRefTable writes the refcount table at its (possibly new) location.
func (m *Image) writeRefTable() error {
	buf := make([]byte, len(m.rt)*8)
	for i, v := range m.rt {
		binary.BigEndian.PutUint64(buf[8*i:], v)
	}
	if _, err := m.f.WriteAt(buf, int64(m.h.rtOff)); err != nil {
		return fmt.Errorf("qcow2: write refcount table at %#x: %w", m.h.rtOff, err)
	}
	return nil
}
