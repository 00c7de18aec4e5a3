package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/govisor/govisor/internal/diskimage"
)

// grainKind is what a grain table entry of an ESXi snapshot extent says
// about its grain.
type grainKind uint8

const (
	grainParent grainKind = iota // not in this extent: the parent's data
	grainZero                    // reads as zeros, whatever the parent holds
	grainData                    // stored in this file
)

// gtCacheSlots is how many grain tables an ESXi extent keeps in memory. A
// COWD table covers only 2 MiB of guest data (16 KiB of table), so keeping
// every table read, as sparseExtent does, could cost gigabytes on a large
// delta; a small direct-mapped cache serves the converters' sequential
// chunked reads just as well.
const gtCacheSlots = 64

// esxExtent is the read-only part both ESXi snapshot extents share: a
// grain directory pointing at grain tables whose entries map grains (spec
// "ESX Server Sparse Extents"; seSparse has the same two-level shape with
// 64-bit entries). The two formats differ only in how an entry decodes.
type esxExtent struct {
	f          diskimage.File
	name       string // the extent's file name, for errors
	fileSize   int64
	capacity   int64 // guest bytes
	grainBytes int64
	gtEntries  int64 // entries per grain table
	entryBytes int64 // 4 (COWD) or 8 (seSparse)
	gtCover    int64 // guest bytes one grain table covers
	// gd holds each grain table's file offset in bytes, 0 for none; every
	// table lies inside the file (checked at open).
	gd []int64
	// decode turns a grain table entry into its kind and file offset.
	decode func(raw uint64) (grainKind, int64, error)
	// parent reads what an unallocated grain holds (extent-relative
	// offsets); nil: zeros.
	parent func(p []byte, off int64) error
	dirty  bool // the header records an unclean shutdown

	mu    sync.Mutex
	slots [gtCacheSlots]gtSlot
}

// gtSlot is one cached grain table: index+1 of the table it holds (0:
// empty) and its raw bytes.
type gtSlot struct {
	idx int64
	raw []byte
}

// gdBounds checks that a grain directory of n entries of size bytes at
// byte offset off lies inside the file, and that n covers the capacity.
func (e *esxExtent) gdBounds(field string, off, n int64) error {
	need := (e.capacity + e.gtCover - 1) / e.gtCover
	if n < need {
		return fmt.Errorf("%w: %s: %s has %d entries, a %d-byte disk needs %d", ErrBadHeader, e.name, field, n, e.capacity, need)
	}
	if off < 0 || off > e.fileSize || need*e.entryBytes > e.fileSize-off {
		return fmt.Errorf("%w: %s: %s of %d entries at %#x lies past the end of the %d-byte file", ErrBadHeader, e.name, field, need, off, e.fileSize)
	}
	return nil
}

// readGD reads the first len(e.gd) raw directory entries at byte offset
// off and has table(i, raw) turn each into a table offset.
func (e *esxExtent) readGD(off int64, table func(i int64, raw uint64) (int64, error)) error {
	raw := make([]byte, int64(len(e.gd))*e.entryBytes)
	if _, err := e.f.ReadAt(raw, off); err != nil {
		return fmt.Errorf("%s: read grain directory: %w", e.name, err)
	}
	gtBytes := e.gtEntries * e.entryBytes
	for i := range e.gd {
		at, err := table(int64(i), e.entry(raw, int64(i)))
		if err != nil {
			return fmt.Errorf("%s: grain directory entry %d: %w", e.name, i, err)
		}
		if at != 0 && (at < 0 || at > e.fileSize-gtBytes) {
			return fmt.Errorf("%w: %s: grain directory entry %d: grain table at %#x lies past the end of the %d-byte file", diskimage.ErrCorrupt, e.name, i, at, e.fileSize)
		}
		e.gd[i] = at
	}
	return nil
}

// entry is the i-th little-endian table entry in raw.
func (e *esxExtent) entry(raw []byte, i int64) uint64 {
	if e.entryBytes == 8 {
		return binary.LittleEndian.Uint64(raw[i*8:])
	}
	return uint64(binary.LittleEndian.Uint32(raw[i*4:]))
}

// table returns grain table i's raw bytes, reading it into its cache slot
// on a miss. Called with e.mu held; the slice is valid until the next call.
func (e *esxExtent) table(i int64) ([]byte, error) {
	s := &e.slots[i%gtCacheSlots]
	if s.idx == i+1 {
		return s.raw, nil
	}
	if s.raw == nil {
		s.raw = make([]byte, e.gtEntries*e.entryBytes)
	}
	s.idx = 0
	if _, err := e.f.ReadAt(s.raw, e.gd[i]); err != nil {
		return nil, fmt.Errorf("read grain table %d at %#x: %w", i, e.gd[i], err)
	}
	s.idx = i + 1
	return s.raw, nil
}

// run describes the longest stretch from off (at most limit bytes) that
// reads alike: all from the parent, all zeros, or data stored contiguously
// from file offset at. Grains are as small as 512 bytes (COWD), so reads
// and maps work in runs, not grain by grain.
func (e *esxExtent) run(off, limit int64) (kind grainKind, at, n int64, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	end := min(off+limit, e.capacity)
	pos := off
	for pos < end {
		gi := pos / e.gtCover
		k, a, step := grainParent, int64(0), (gi+1)*e.gtCover-pos
		if e.gd[gi] != 0 {
			t, err := e.table(gi)
			if err != nil {
				return 0, 0, 0, err
			}
			g := pos / e.grainBytes
			if k, a, err = e.decode(e.entry(t, g%e.gtEntries)); err != nil {
				return 0, 0, 0, fmt.Errorf("grain %d: %w", g, err)
			}
			in := pos % e.grainBytes
			a, step = a+in, e.grainBytes-in
		}
		if pos == off {
			kind, at = k, a
		} else if k != kind || (k == grainData && a != at+(pos-off)) {
			break
		}
		pos += step
	}
	return kind, at, min(pos, end) - off, nil
}

// openESX opens extent i of the descriptor, a VMFSSPARSE (COWD) or SESPARSE
// one, in f; the caller closes f on error.
func (img *Image) openESX(i int, el ExtentLine, f diskimage.File) (*esxExtent, error) {
	if !img.readOnly {
		return nil, fmt.Errorf("%w: extent %d (%s): ESXi snapshot extents open read-only", diskimage.ErrUnsupported, i, el.Filename)
	}
	open := openCOWD
	if el.Type == "SESPARSE" {
		open = openSESparse
	}
	e, err := open(f, el.Filename)
	if err != nil {
		return nil, fmt.Errorf("extent %d: %w", i, err)
	}
	if e.size() < el.Sectors*sectorSize {
		return nil, fmt.Errorf("%w: extent %d (%s) holds %d bytes, descriptor says %d", diskimage.ErrCorrupt, i, el.Filename, e.size(), el.Sectors*sectorSize)
	}
	return e, nil
}

// esxDataFile names the ESXi snapshot extent header starts with: "vmfsSparse"
// for a COWD header, "seSparse" for a seSparse constant header (magic and
// version, so a raw disk is not mistaken for one), "" for neither.
func esxDataFile(header []byte) string {
	switch {
	case bytes.HasPrefix(header, []byte(cowdMagic)):
		return "vmfsSparse"
	case len(header) >= 16 && binary.LittleEndian.Uint64(header) == seConstMagic && binary.LittleEndian.Uint64(header[8:]) == seVersion:
		return "seSparse"
	}
	return ""
}

func (e *esxExtent) size() int64 { return e.capacity }

// readAt reads guest data run by run: stored data from the file, zero
// grains as zeros, unallocated grains from the parent.
func (e *esxExtent) readAt(p []byte, off int64) error {
	for len(p) > 0 {
		kind, at, n, err := e.run(off, int64(len(p)))
		if err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		if n <= 0 {
			return fmt.Errorf("%w: %s: read at %#x past its %d bytes", diskimage.ErrCorrupt, e.name, off, e.capacity)
		}
		switch {
		case kind == grainData:
			k, err := e.f.ReadAt(p[:n], at)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("%s: read grains at %#x: %w", e.name, at, err)
			}
			clear(p[k:n]) // a grain cut short by the end of file reads as zeros, as qemu does
		case kind == grainParent && e.parent != nil:
			if err := e.parent(p[:n], off); err != nil {
				return err
			}
		default:
			clear(p[:n])
		}
		p, off = p[n:], off+n
	}
	return nil
}

func (e *esxExtent) writeAt(p []byte, off int64) error {
	return fmt.Errorf("%w: %s: ESXi snapshot extents are read-only", diskimage.ErrReadOnly, e.name)
}

// extentMap reports stored grains as data, zero grains as zeros, and
// unallocated grains as data when a parent supplies them.
func (e *esxExtent) extentMap(off, n int64) (bool, int64, error) {
	kind, _, m, err := e.run(off, n)
	if err != nil {
		return false, 0, fmt.Errorf("%s: %w", e.name, err)
	}
	return kind == grainData || (kind == grainParent && e.parent != nil), m, nil
}

func (e *esxExtent) setParent(read func(p []byte, off int64) error) { e.parent = read }
func (e *esxExtent) flush() error                                   { return nil }
func (e *esxExtent) close() error                                   { return e.f.Close() }
