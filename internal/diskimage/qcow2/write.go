package qcow2

import (
	"fmt"
)

// WriteAt writes the disk. Writes inside clusters this image owns go
// straight to them; others allocate a new cluster (copying what the rest
// of the cluster read as before) and remap it.
func (m *Image) WriteAt(p []byte, off int64) (int, error) {
	if m.ro {
		return 0, ErrReadOnlyImage
	}
	m.mu.Lock()
	n, err := m.checkRange(off, len(p), "write")
	m.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return 0, fmt.Errorf("%w: write of %d bytes at %d", ErrOutOfRange, len(p), off)
	}
	for done := 0; done < n; {
		k, err := m.writeRun(p[done:n], off+int64(done))
		if err != nil {
			return done, err
		}
		done += k
	}
	return n, nil
}

// ownedHost returns the host offset of a plain cluster only this image
// references (COPIED set), which may be written in place; else 0.
func (m *Image) ownedHost(e uint64) uint64 {
	if e&flagCopied == 0 {
		return 0
	}
	return m.plainHost(e)
}

// writeRun writes a prefix of p at guest offset pos and returns its
// length: a run of owned, contiguously stored clusters written in place
// (without the lock); a run of whole unallocated clusters written to new
// contiguous ones; or one cluster piece through allocWrite.
func (m *Image) writeRun(p []byte, pos int64) (int, error) {
	vc := uint64(pos / m.cs)
	in := pos & (m.cs - 1)
	k := int(min(m.cs-in, int64(len(p))))
	m.mu.Lock()
	e, _, err := m.lookup(vc)
	if err != nil {
		m.mu.Unlock()
		return 0, err
	}
	if host := m.ownedHost(e); host != 0 {
		for k < len(p) && k < maxRun {
			e2, _, err := m.lookup(vc + uint64(k+int(in))/uint64(m.cs))
			if err != nil || m.ownedHost(e2) != host+uint64(k)+uint64(in) {
				break
			}
			k += int(min(m.cs, int64(len(p)-k)))
		}
		m.mu.Unlock()
		if _, err := m.f.WriteAt(p[:k], int64(host)+in); err != nil {
			return 0, fmt.Errorf("qcow2: write data at %#x: %w", int64(host)+in, err)
		}
		m.mu.Lock()
		m.dataDirty = true
		m.mu.Unlock()
		return k, nil
	}
	defer m.mu.Unlock()
	fresh := func(e uint64) bool { return e&flagCompressed == 0 && e&l2OffMask == 0 }
	if in != 0 || int64(k) != m.cs || !fresh(e) {
		return k, m.allocWrite(vc, p[:k], in, e)
	}
	nc := 1
	for int64(nc+1)*m.cs <= int64(len(p)) && int64(nc)*m.cs < maxRun {
		e2, _, err := m.lookup(vc + uint64(nc))
		if err != nil || !fresh(e2) {
			break
		}
		nc++
	}
	host, err := m.allocClusters(int64(nc))
	if err != nil {
		return 0, err
	}
	// Data first; the L2 entries reach the disk after it (flushLocked).
	if _, err := m.f.WriteAt(p[:int64(nc)*m.cs], int64(host)); err != nil {
		return 0, fmt.Errorf("qcow2: write data at %#x: %w", host, err)
	}
	m.dataDirty = true
	for i := 0; i < nc; i++ {
		t, err := m.l2For(vc + uint64(i))
		if err != nil {
			return 0, err
		}
		t.e[(vc+uint64(i))%m.l2Entries] = host + uint64(int64(i)*m.cs) | flagCopied
		t.dirty = true
	}
	return int(int64(nc) * m.cs), nil
}

// allocWrite writes p at in inside guest cluster vc, whose entry is e, into
// a cluster of its own, then points the L2 entry at it. Callers hold m.mu.
func (m *Image) allocWrite(vc uint64, p []byte, in int64, e uint64) error {
	buf := make([]byte, m.cs)
	if int64(len(p)) < m.cs {
		if err := m.readPiece(buf, int64(vc)*m.cs, e, 0); err != nil {
			return err
		}
	}
	copy(buf[in:], p)
	old := e & l2OffMask
	var host uint64
	if e&flagCompressed == 0 && e&flagCopied != 0 && old != 0 && old%uint64(m.cs) == 0 {
		host = old // a preallocated zero cluster we own: reuse it
	} else {
		var err error
		if host, err = m.allocClusters(1); err != nil {
			return err
		}
	}
	// The data goes first; the L2 entry only reaches the disk after it
	// (flushLocked).
	if _, err := m.f.WriteAt(buf, int64(host)); err != nil {
		return fmt.Errorf("qcow2: write data at %#x: %w", host, err)
	}
	m.dataDirty = true
	t, err := m.l2For(vc)
	if err != nil {
		return err
	}
	i := vc % m.l2Entries
	t.e[i] = host | flagCopied
	t.dirty = true
	m.unref(e, host)
	return nil
}

// unref queues the release of the clusters old entry e referenced, unless
// it is still used as keep.
func (m *Image) unref(e, keep uint64) {
	if e&flagCompressed != 0 {
		off, size := m.compressedRange(e)
		for c := off &^ uint64(m.cs-1); c < off+size; c += uint64(m.cs) {
			m.pendingFree = append(m.pendingFree, c)
		}
		return
	}
	if host := e & l2OffMask; host != 0 && host != keep && host%uint64(m.cs) == 0 {
		m.pendingFree = append(m.pendingFree, host)
	}
}

// l2For returns the L2 table for guest cluster vc, ready to modify:
// allocated if missing, copied if shared (L1 entry without the COPIED flag).
func (m *Image) l2For(vc uint64) (*l2Table, error) {
	l1i := vc / m.l2Entries
	l1e := m.l1[l1i]
	off := l1e & l1OffMask
	if off != 0 && l1e&flagCopied != 0 {
		return m.loadL2(off)
	}
	var old []uint64
	if off != 0 {
		t, err := m.loadL2(off)
		if err != nil {
			return nil, err
		}
		old = append([]uint64(nil), t.e...)
		m.pendingFree = append(m.pendingFree, off)
	}
	noff, err := m.allocClusters(1)
	if err != nil {
		return nil, err
	}
	t, err := m.newL2(noff)
	if err != nil {
		return nil, err
	}
	copy(t.e, old)
	m.l1[l1i] = noff | flagCopied
	m.l1Dirty = true
	return t, nil
}
