package qcow2

import (
	"fmt"
	"io"
)

// ReadAt reads the disk.
func (m *Image) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	n, err := m.checkRange(off, len(p), "read")
	m.mu.Unlock()
	if err != nil {
		return 0, err
	}
	for done := 0; done < n; {
		pos := off + int64(done)
		in := pos & (m.cs - 1)
		k := int(min(m.cs-in, int64(n-done)))
		vc := uint64(pos / m.cs)
		m.mu.Lock()
		e, bm, err := m.lookup(vc)
		var host uint64
		if err == nil {
			host = m.plainHost(e)
		}
		if host != 0 {
			// Extend over the following clusters while they are stored
			// contiguously: one host read instead of one per cluster.
			for run := k; done+run < n && run < maxRun; run += int(min(m.cs, int64(n-done-run))) {
				e2, _, err2 := m.lookup(vc + uint64(run+int(in))/uint64(m.cs))
				if err2 != nil || m.plainHost(e2) != host+uint64(run)+uint64(in) {
					break
				}
				k = run + int(min(m.cs, int64(n-done-run)))
			}
		}
		m.mu.Unlock()
		if err == nil && host != 0 {
			if err = readFull(m.f, p[done:done+k], int64(host)+in); err != nil {
				err = fmt.Errorf("qcow2: read data at %#x: %w", int64(host)+in, err)
			}
		} else if err == nil {
			err = m.readPiece(p[done:done+k], pos, e, bm)
		}
		if err != nil {
			return done, err
		}
		done += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// maxRun bounds one coalesced host read or write.
const maxRun = 8 << 20

// plainHost returns the host offset of a cluster stored whole and
// uncompressed at an aligned offset, or 0 for any other kind of cluster.
func (m *Image) plainHost(e uint64) uint64 {
	if e&flagCompressed != 0 || m.extL2 || m.isZero(e) {
		return 0
	}
	if h := e & l2OffMask; h%uint64(m.cs) == 0 {
		return h
	}
	return 0
}

// readPiece reads p (inside one guest cluster) at guest offset pos given
// the cluster's L2 entry e and subcluster bitmap bm.
func (m *Image) readPiece(p []byte, pos int64, e, bm uint64) error {
	in := pos & (m.cs - 1)
	if e&flagCompressed != 0 {
		data, err := m.readCompressedCached(e)
		if err != nil {
			return err
		}
		copy(p, data[in:])
		return nil
	}
	host := e & l2OffMask
	if m.extL2 {
		return m.readSubclusters(p, pos, host, bm)
	}
	if m.isZero(e) {
		clear(p)
		return nil
	}
	if host == 0 {
		return m.readBacking(p, pos)
	}
	if host%uint64(m.cs) != 0 {
		return fmt.Errorf("%w: data cluster offset %#x unaligned (guest offset %#x)", errCorrupt, host, pos)
	}
	if err := readFull(m.f, p, int64(host)+in); err != nil {
		return fmt.Errorf("qcow2: read data at %#x: %w", int64(host)+in, err)
	}
	return nil
}

// readSubclusters reads with extended L2 entries ("Extended L2 Entries"):
// bitmap bit i says subcluster i is allocated, bit 32+i that it reads as
// zeros; otherwise it comes from the backing file.
func (m *Image) readSubclusters(p []byte, pos int64, host, bm uint64) error {
	sc := m.cs / 32
	for len(p) > 0 {
		in := pos & (m.cs - 1)
		i := uint(in / sc)
		k := int(min(sc-in%sc, int64(len(p))))
		switch {
		case bm&(1<<i) != 0:
			if host == 0 || host%uint64(m.cs) != 0 {
				return fmt.Errorf("%w: allocated subcluster with bad offset %#x", errCorrupt, host)
			}
			if err := readFull(m.f, p[:k], int64(host)+in); err != nil {
				return fmt.Errorf("qcow2: read data at %#x: %w", int64(host)+in, err)
			}
		case bm&(1<<(32+i)) != 0:
			clear(p[:k])
		default:
			if err := m.readBacking(p[:k], pos); err != nil {
				return err
			}
		}
		p, pos = p[k:], pos+int64(k)
	}
	return nil
}

// readBacking reads unallocated space: from the backing file, zeros past
// its end or without one ("Backing file": shorter backing files read as
// zeros beyond their end).
func (m *Image) readBacking(p []byte, pos int64) error {
	if m.backing == nil {
		clear(p)
		return nil
	}
	bs := m.backing.VirtualSize()
	n := 0
	if pos < bs {
		n = int(min(int64(len(p)), bs-pos))
		if _, err := m.backing.ReadAt(p[:n], pos); err != nil && err != io.EOF {
			return fmt.Errorf("qcow2: read backing file at %d: %w", pos, err)
		}
	}
	clear(p[n:])
	return nil
}
