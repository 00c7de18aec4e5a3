package qcow2

import (
	"encoding/binary"
	"fmt"

	"github.com/govisor/govisor/internal/diskimage"
)

// Consistency check, as `qemu-img check` does it: count from the metadata
// how many references every host cluster has (header, L1/L2 tables, data
// and compressed clusters, refcount structures, snapshot tables), then
// compare with the stored refcounts ("Host cluster management"). A stored
// count above the computed one is a leak, below it a corruption; so are
// entries pointing outside the file or at unaligned offsets, and COPIED
// flags that disagree with a refcount of one.

const maxMessages = 100

type scan struct {
	m          *Image
	refs       []uint32
	res        diskimage.CheckResult
	fixCopied  bool
	noCopied   bool
	refOf      []uint32 // refcounts to check COPIED against; nil: stored ones
	maxCluster uint64
}

func (s *scan) report(corrupt bool, format string, args ...any) {
	if corrupt {
		s.res.Corruptions++
	}
	if len(s.res.Messages) < maxMessages {
		s.res.Messages = append(s.res.Messages, fmt.Sprintf(format, args...))
	}
}

// ref counts one reference to every cluster in [off, off+n).
func (s *scan) ref(off, n uint64, what string) bool {
	cs := uint64(s.m.cs)
	if n == 0 {
		return true
	}
	first, last := off/cs, (off+n-1)/cs
	if last >= uint64(len(s.refs)) {
		s.report(true, "ERROR %s at %#x is beyond the end of the image file", what, off)
		return false
	}
	for c := first; c <= last; c++ {
		s.refs[c]++
		s.maxCluster = max(s.maxCluster, c+1)
	}
	return true
}

func (s *scan) aligned(off uint64, what string) bool {
	if off%uint64(s.m.cs) != 0 {
		s.report(true, "ERROR %s offset %#x is not cluster aligned", what, off)
		return false
	}
	return true
}

// copied checks an entry's COPIED flag against the stored refcount, and
// with fixCopied returns the corrected entry.
func (s *scan) copied(e, off uint64, what string) (uint64, error) {
	if s.noCopied {
		return e, nil
	}
	var rc uint64
	if s.refOf != nil {
		if c := off / uint64(s.m.cs); c < uint64(len(s.refOf)) {
			rc = uint64(s.refOf[c])
		}
	} else {
		var err error
		if rc, err = s.m.refcount(off); err != nil {
			return e, err
		}
	}
	want := rc == 1
	if (e&flagCopied != 0) != want {
		s.report(true, "ERROR OFLAG_COPIED %s %#x: refcount=%d", what, off, rc)
		if s.fixCopied {
			e ^= flagCopied
		}
	}
	return e, nil
}

// walkL1 counts the references of an L1 table and the L2 tables and data
// it maps; active is false for snapshot tables.
func (s *scan) walkL1(l1Off uint64, l1Size uint32, active bool) error {
	m := s.m
	if !s.aligned(l1Off, "L1 table") || !s.ref(l1Off, uint64(l1Size)*8, "L1 table") {
		return nil
	}
	l1 := m.l1
	if !active {
		buf := make([]byte, uint64(l1Size)*8) // bounded by the file size (ref above)
		if err := readFull(m.f, buf, int64(l1Off)); err != nil {
			return fmt.Errorf("qcow2: read snapshot L1 table: %w", err)
		}
		l1 = make([]uint64, l1Size)
		for i := range l1 {
			l1[i] = binary.BigEndian.Uint64(buf[8*i:])
		}
	}
	l1Changed := false
	buf := make([]byte, m.cs)
	for i, e := range l1 {
		off := e & l1OffMask
		if off == 0 || !s.aligned(off, "L2 table") || !s.ref(off, uint64(m.cs), "L2 table") {
			continue
		}
		if active {
			ne, err := s.copied(e, off, "L2 table")
			if err != nil {
				return err
			}
			if ne != e {
				l1[i], l1Changed = ne, true
			}
		}
		if err := readFull(m.f, buf, int64(off)); err != nil {
			return fmt.Errorf("qcow2: read L2 table at %#x: %w", off, err)
		}
		changed, err := s.walkL2(buf, active)
		if err != nil {
			return err
		}
		if changed {
			if _, err := m.f.WriteAt(buf, int64(off)); err != nil {
				return fmt.Errorf("qcow2: repair L2 table at %#x: %w", off, err)
			}
		}
	}
	if l1Changed {
		m.l1Dirty = true
		return m.writeL1()
	}
	return nil
}

func (s *scan) walkL2(buf []byte, active bool) (bool, error) {
	m := s.m
	stride := 8
	if m.extL2 {
		stride = 16
	}
	changed := false
	for i := 0; i+8 <= len(buf); i += stride {
		e := binary.BigEndian.Uint64(buf[i:])
		if e&flagCompressed != 0 {
			off, n := m.compressedRange(e)
			if s.ref(off, n, "compressed cluster") && active {
				s.res.AllocatedClusters++
			}
			continue
		}
		host := e & l2OffMask
		if host == 0 || !s.aligned(host, "data cluster") || !s.ref(host, uint64(m.cs), "data cluster") {
			continue
		}
		if !active {
			continue
		}
		s.res.AllocatedClusters++
		ne, err := s.copied(e, host, "data cluster")
		if err != nil {
			return false, err
		}
		if ne != e {
			binary.BigEndian.PutUint64(buf[i:], ne)
			changed = true
		}
	}
	return changed, nil
}

// walkSnapshots counts the snapshot table and every snapshot's L1/L2
// tables ("Snapshots").
func (s *scan) walkSnapshots() error {
	m := s.m
	if m.h.nbSnapshots == 0 {
		return nil
	}
	if m.h.nbSnapshots > 65536 || !s.aligned(m.h.snapOff, "snapshot table") {
		s.report(true, "ERROR snapshot table: %d snapshots at %#x", m.h.nbSnapshots, m.h.snapOff)
		return nil
	}
	pos := m.h.snapOff
	var hdr [40]byte
	for i := uint32(0); i < m.h.nbSnapshots; i++ {
		if err := readFull(m.f, hdr[:], int64(pos)); err != nil {
			return fmt.Errorf("qcow2: read snapshot %d: %w", i, err)
		}
		be := binary.BigEndian
		l1Off, l1Size := be.Uint64(hdr[0:]), be.Uint32(hdr[8:])
		n := 40 + uint64(be.Uint32(hdr[36:])) + uint64(be.Uint16(hdr[12:])) + uint64(be.Uint16(hdr[14:]))
		pos += (n + 7) &^ 7
		if uint64(l1Size)*8 > maxL1Bytes {
			s.report(true, "ERROR snapshot %d: L1 size %d too large", i, l1Size)
			continue
		}
		if err := s.walkL1(l1Off, l1Size, false); err != nil {
			return err
		}
	}
	s.ref(m.h.snapOff, pos-m.h.snapOff, "snapshot table")
	return nil
}

// computeRefs scans all metadata; with refStructs it also counts the
// refcount table and blocks.
func (m *Image) computeRefs(refStructs bool, refOf []uint32) (*scan, error) {
	size, err := m.f.Size()
	if err != nil {
		return nil, fmt.Errorf("qcow2: size of %s: %w", m.path, err)
	}
	s := &scan{m: m, fixCopied: refOf != nil, refOf: refOf, noCopied: !refStructs && refOf == nil}
	s.refs = make([]uint32, (uint64(size)+uint64(m.cs)-1)/uint64(m.cs))
	s.res.TotalClusters = int64((m.h.size + uint64(m.cs) - 1) / uint64(m.cs))
	s.ref(0, uint64(m.cs), "header")
	if err := s.walkL1(m.h.l1Off, m.h.l1Size, true); err != nil {
		return nil, err
	}
	if err := s.walkSnapshots(); err != nil {
		return nil, err
	}
	if refStructs {
		s.ref(m.h.rtOff, uint64(m.h.rtClusters)<<m.h.clusterBits, "refcount table")
		for i, e := range m.rt {
			off := e & rtOffMask
			if off != 0 && s.aligned(off, "refcount block") {
				s.ref(off, uint64(m.cs), fmt.Sprintf("refcount block %d", i))
			}
		}
	}
	return s, nil
}

// Check verifies the metadata and with repair rebuilds the refcounts and
// fixes COPIED flags.
func (m *Image) Check(repair bool) (diskimage.CheckResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if repair && m.ro {
		return diskimage.CheckResult{}, ErrReadOnlyImage
	}
	if err := m.flushLocked(); err != nil {
		return diskimage.CheckResult{}, err
	}
	if m.rt == nil {
		if err := m.loadRefTable(); err != nil {
			return diskimage.CheckResult{}, err
		}
	}
	res, err := m.checkLocked()
	if err != nil || !repair {
		return res, err
	}
	if res.Corruptions+res.Leaks == 0 {
		if m.h.incompat&(incCorrupt|incDirty) != 0 {
			err = m.setIncompat(m.h.incompat &^ (incCorrupt | incDirty))
		}
		return res, err
	}
	if _, err := m.rebuildRefcounts(); err != nil {
		return res, err
	}
	after, err := m.checkLocked()
	if err != nil {
		return res, err
	}
	after.LeaksFixed = max(0, res.Leaks-after.Leaks)
	after.CorruptionsFixed = max(0, res.Corruptions-after.Corruptions)
	after.Messages = append(res.Messages, after.Messages...)
	if after.Corruptions == 0 && m.h.incompat&(incCorrupt|incDirty) != 0 {
		if err := m.setIncompat(m.h.incompat &^ (incCorrupt | incDirty)); err != nil {
			return after, err
		}
	}
	return after, nil
}

func (m *Image) checkLocked() (diskimage.CheckResult, error) {
	s, err := m.computeRefs(true, nil)
	if err != nil {
		return diskimage.CheckResult{}, err
	}
	// Compare with the stored refcounts, block by block.
	for ti, e := range m.rt {
		if e&rtOffMask == 0 || e&rtOffMask%uint64(m.cs) != 0 {
			continue
		}
		first := uint64(ti) * m.rbEntries
		b, err := m.refBlockFor(first)
		if err != nil {
			return s.res, err
		}
		for i := uint64(0); i < m.rbEntries; i++ {
			c := first + i
			stored := getRef(b.buf, i, m.h.refcountOrder)
			var want uint64
			if c < uint64(len(s.refs)) {
				want = uint64(s.refs[c])
			}
			s.compare(c, stored, want)
		}
	}
	// Referenced clusters no refcount block covers.
	for c, want := range s.refs {
		ti := uint64(c) / m.rbEntries
		if want != 0 && (ti >= uint64(len(m.rt)) || m.rt[ti]&rtOffMask == 0) {
			s.compare(uint64(c), 0, uint64(want))
		}
	}
	s.res.ImageEndOffset = int64(s.maxCluster) * m.cs
	return s.res, nil
}

func (s *scan) compare(c, stored, want uint64) {
	switch {
	case stored == want:
	case stored < want:
		s.report(true, "ERROR cluster %d refcount=%d reference=%d", c, stored, want)
	default:
		s.res.Leaks++
		if len(s.res.Messages) < maxMessages {
			s.res.Messages = append(s.res.Messages, fmt.Sprintf("Leaked cluster %d refcount=%d reference=%d", c, stored, want))
		}
	}
}

// rebuildRefcounts replaces the refcount structures with new ones, built
// from the references the metadata holds, at the end of the file; the
// header switches to them once they are durable. It also fixes COPIED
// flags. Callers hold m.mu (or have the image to themselves).
func (m *Image) rebuildRefcounts() (int, error) {
	// First count references (the stored refcounts may be stale: ignore
	// them), then fix COPIED flags against the counts.
	s, err := m.computeRefs(false, nil)
	if err != nil {
		return 0, err
	}
	if _, err := m.computeRefs(false, s.refs); err != nil {
		return 0, err
	}
	cs := uint64(m.cs)
	start := max(uint64(len(s.refs)), uint64(m.hostEnd)/cs)
	var rbc, rtc uint64 = 1, 1
	for {
		total := start + rtc + rbc
		nrbc := (total + m.rbEntries - 1) / m.rbEntries
		nrtc := (nrbc*8 + cs - 1) / cs
		if nrbc == rbc && nrtc == rtc {
			break
		}
		rbc, rtc = nrbc, nrtc
	}
	if rtc*cs > maxRefTableBytes {
		return 0, fmt.Errorf("qcow2: rebuilt refcount table would exceed %d bytes", maxRefTableBytes)
	}
	total := start + rtc + rbc
	blocks := make([]byte, rbc*cs)
	limit := uint64(1)<<(1<<m.h.refcountOrder) - 1
	if m.h.refcountOrder == 6 {
		limit = ^uint64(0)
	}
	for c := uint64(0); c < total; c++ {
		var v uint64 = 1 // the new structures themselves
		if c < start {
			v = 0
			if c < uint64(len(s.refs)) {
				v = uint64(s.refs[c])
			}
		}
		if v > limit {
			return 0, fmt.Errorf("%w: cluster %d has %d references, over refcount_bits", errCorrupt, c, v)
		}
		setRef(blocks, c, m.h.refcountOrder, v)
	}
	table := make([]byte, rtc*cs)
	rt := make([]uint64, rtc*cs/8)
	for i := uint64(0); i < rbc; i++ {
		rt[i] = (start + rtc + i) * cs
		binary.BigEndian.PutUint64(table[8*i:], rt[i])
	}
	if _, err := m.f.WriteAt(blocks, int64((start+rtc)*cs)); err != nil {
		return 0, fmt.Errorf("qcow2: write rebuilt refcount blocks: %w", err)
	}
	if _, err := m.f.WriteAt(table, int64(start*cs)); err != nil {
		return 0, fmt.Errorf("qcow2: write rebuilt refcount table: %w", err)
	}
	if err := m.sync(); err != nil {
		return 0, err
	}
	var b [12]byte
	binary.BigEndian.PutUint64(b[:], start*cs)
	binary.BigEndian.PutUint32(b[8:], uint32(rtc))
	if err := m.writeHeaderBytes(offRefTable, b[:]); err != nil {
		return 0, err
	}
	m.h.rtOff, m.h.rtClusters = start*cs, uint32(rtc)
	m.rt, m.rb = rt, map[uint64]*refBlock{}
	m.rtDirty, m.rtMoved, m.oldRT = false, false, nil
	m.hostEnd = int64(total * cs)
	m.compFree = 0
	m.l2 = newL2Cache(m.cs) // L2 tables may have been rewritten
	m.zc.reset()            // and new clusters may land where freed ones were
	return s.res.Corruptions, nil
}
