package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/govisor/govisor/internal/allzero"
	"github.com/govisor/govisor/internal/diskimage"
	"github.com/klauspost/compress/zlib"
)

// sparseExtent is a hosted sparse extent (KDMV): a grain directory pointing
// at grain tables pointing at grains (spec "Grain Directories and Grain
// Tables"). Compressed (streamOptimized) extents are read-only here.
type sparseExtent struct {
	f          diskimage.File
	hdr        *SparseHeader
	fileSize   int64
	grainBytes int64
	gtCover    int64 // guest bytes one grain table covers
	gd, rgd    []uint32
	compressed bool
	writable   bool
	// parent reads what an unallocated grain of a differencing disk
	// holds (extent-relative offsets); nil: zeros.
	parent func(p []byte, off int64) error

	mu      sync.Mutex
	gts     map[uint32][]uint32 // grain tables read so far, by GD index
	next    int64               // file offset of the next new grain
	pending map[int64]uint32    // grain index -> sector, not yet in the GTs
	// A one-grain cache of the last decompressed grain.
	cacheMu  sync.Mutex
	cacheIdx int64
	cache    []byte
}

// openSparse reads the header (or the footer's copy, for streamOptimized)
// and the grain directory, checking every table against the file size.
func openSparse(f diskimage.File, writable bool) (*sparseExtent, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, sectorSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	h, err := ParseSparseHeader(b)
	if err != nil {
		return nil, err
	}
	e := &sparseExtent{f: f, hdr: h, fileSize: st.Size(), cacheIdx: -1, gts: map[uint32][]uint32{}, pending: map[int64]uint32{}}
	if h.GDOffset == gdAtEnd {
		// Spec: streamOptimized writers put the real header in the footer,
		// 1024 bytes before the end (footer marker, footer, EOS marker).
		if e.fileSize < 3*sectorSize {
			return nil, fmt.Errorf("%w: no room for a footer", ErrBadHeader)
		}
		if _, err := f.ReadAt(b, e.fileSize-2*sectorSize); err != nil {
			return nil, fmt.Errorf("read footer: %w", err)
		}
		if h, err = ParseSparseHeader(b); err != nil {
			return nil, fmt.Errorf("footer: %w", err)
		}
		if h.GDOffset == gdAtEnd {
			return nil, fmt.Errorf("%w: footer has no grain directory offset", ErrBadHeader)
		}
		e.hdr = h
	}
	e.compressed = h.Flags&flagCompressed != 0
	e.writable = writable && !e.compressed
	e.grainBytes = int64(h.GrainSize) * sectorSize
	e.gtCover = e.grainBytes * int64(h.NumGTEsPerGT)
	numGT := (int64(h.Capacity)*sectorSize + e.gtCover - 1) / e.gtCover
	if e.gd, err = e.readDir(h.GDOffset, numGT); err != nil {
		return nil, fmt.Errorf("grain directory: %w", err)
	}
	if h.Flags&flagRedundantGT != 0 && h.RGDOffset != 0 && e.writable {
		if e.rgd, err = e.readDir(h.RGDOffset, numGT); err != nil {
			return nil, fmt.Errorf("redundant grain directory: %w", err)
		}
	}
	e.next = (e.fileSize + sectorSize - 1) / sectorSize * sectorSize
	e.next = max(e.next, int64(h.OverHead)*sectorSize)
	return e, nil
}

// readDir reads a grain directory of n entries at sector off.
func (e *sparseExtent) readDir(off uint64, n int64) ([]uint32, error) {
	if off > uint64(e.fileSize)/sectorSize || n*4 > e.fileSize-int64(off)*sectorSize {
		return nil, fmt.Errorf("%w: %d entries at sector %d past the end of a %d-byte file", diskimage.ErrCorrupt, n, off, e.fileSize)
	}
	raw := make([]byte, n*4)
	if _, err := e.f.ReadAt(raw, int64(off)*sectorSize); err != nil {
		return nil, err
	}
	d := make([]uint32, n)
	for i := range d {
		d[i] = binary.LittleEndian.Uint32(raw[i*4:])
	}
	return d, nil
}

// gt returns grain table i (nil if absent), reading it on first use.
// Called with e.mu held.
func (e *sparseExtent) gt(i int64) ([]uint32, error) {
	if i >= int64(len(e.gd)) || e.gd[i] == 0 {
		return nil, nil
	}
	if t, ok := e.gts[uint32(i)]; ok {
		return t, nil
	}
	t, err := e.readDir(uint64(e.gd[i]), int64(e.hdr.NumGTEsPerGT))
	if err != nil {
		return nil, fmt.Errorf("grain table %d: %w", i, err)
	}
	e.gts[uint32(i)] = t
	return t, nil
}

// lookup returns the sector of grain g: 0 unallocated, 1 a zeroed grain.
func (e *sparseExtent) lookup(g int64) (uint32, error) {
	if s, ok := e.pending[g]; ok {
		return s, nil
	}
	t, err := e.gt(g / int64(e.hdr.NumGTEsPerGT))
	if t == nil || err != nil {
		return 0, err
	}
	return t[g%int64(e.hdr.NumGTEsPerGT)], nil
}

func (e *sparseExtent) size() int64 { return int64(e.hdr.Capacity) * sectorSize }

// readAt reads guest data. The lock covers only the table lookups, so
// parallel readers do their I/O and decompression concurrently.
func (e *sparseExtent) readAt(p []byte, off int64) error {
	for len(p) > 0 {
		g, in := off/e.grainBytes, off%e.grainBytes
		n := min(int64(len(p)), e.grainBytes-in)
		e.mu.Lock()
		sec, err := e.lookup(g)
		e.mu.Unlock()
		if err != nil {
			return err
		}
		switch {
		case sec == 0 && e.parent != nil:
			// Unallocated in a differencing disk: the parent's data
			// (spec "Grain Table": a GTE of 0 is not in this extent).
			if err := e.parent(p[:n], off); err != nil {
				return err
			}
		case sec <= 1:
			// Unallocated (0) or zeroed grain (1, spec "zeroed-grain GTE"):
			// both read as zeros; govisor opens no parent disks.
			clear(p[:n])
		case e.compressed:
			if err := e.readCompressed(g, sec, in, p[:n]); err != nil {
				return err
			}
		default:
			at := int64(sec)*sectorSize + in
			k, err := e.f.ReadAt(p[:n], at)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read grain %d at %#x: %w", g, at, err)
			}
			clear(p[k:n]) // a grain cut short by the end of file reads as zeros
		}
		p, off = p[n:], off+n
	}
	return nil
}

// readCompressed copies part of compressed grain g into p, through a
// one-grain cache: converters read in chunks smaller than a grain.
func (e *sparseExtent) readCompressed(g int64, sec uint32, in int64, p []byte) error {
	e.cacheMu.Lock()
	if e.cacheIdx == g {
		copy(p, e.cache[in:])
		e.cacheMu.Unlock()
		return nil
	}
	e.cacheMu.Unlock()
	grain, err := e.inflate(g, sec)
	if err != nil {
		return err
	}
	copy(p, grain[in:])
	e.cacheMu.Lock()
	e.cacheIdx, e.cache = g, grain
	e.cacheMu.Unlock()
	return nil
}

var inflaters sync.Pool

// inflate reads and decompresses the grain at sector sec (spec "Compressed
// Grains": a grain marker holding the LBA and the compressed size, then
// deflate data in zlib format).
func (e *sparseExtent) inflate(g int64, sec uint32) ([]byte, error) {
	at := int64(sec) * sectorSize
	var hdr [grainMarkerBytes]byte
	if _, err := e.f.ReadAt(hdr[:], at); err != nil {
		return nil, fmt.Errorf("read grain marker %d at %#x: %w", g, at, err)
	}
	lba := binary.LittleEndian.Uint64(hdr[0:])
	size := int64(binary.LittleEndian.Uint32(hdr[8:]))
	if lba != uint64(g)*e.hdr.GrainSize {
		return nil, fmt.Errorf("%w: grain %d marker says LBA %d", diskimage.ErrCorrupt, g, lba)
	}
	if size > 2*e.grainBytes+4096 || size > e.fileSize-at-grainMarkerBytes {
		return nil, fmt.Errorf("%w: grain %d compressed size %d", diskimage.ErrCorrupt, g, size)
	}
	comp := make([]byte, size)
	if _, err := e.f.ReadAt(comp, at+grainMarkerBytes); err != nil {
		return nil, fmt.Errorf("read grain %d: %w", g, err)
	}
	// Inflaters are pooled: setting one up costs more than a grain.
	zr, _ := inflaters.Get().(io.ReadCloser)
	var err error
	if zr == nil {
		zr, err = zlib.NewReader(bytes.NewReader(comp))
	} else {
		err = zr.(zlib.Resetter).Reset(bytes.NewReader(comp), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: grain %d: %v", diskimage.ErrCorrupt, g, err)
	}
	defer inflaters.Put(zr)
	grain := make([]byte, e.grainBytes)
	// The last grain of a disk whose size is not a grain multiple may
	// inflate short; the rest stays zero.
	if _, err := io.ReadFull(zr, grain); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%w: inflate grain %d: %v", diskimage.ErrCorrupt, g, err)
	}
	return grain, nil
}

// writeAt writes guest data. A new grain is written whole (zeros around the
// data) at the end of the file; its grain-table entry is only recorded in
// memory until flush, which syncs the grains before it writes the tables.
// So a crash never leaves a table entry pointing at unwritten data.
func (e *sparseExtent) writeAt(p []byte, off int64) error {
	if !e.writable {
		return diskimage.ErrReadOnly
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(p) > 0 {
		g, in := off/e.grainBytes, off%e.grainBytes
		n := min(int64(len(p)), e.grainBytes-in)
		sec, err := e.lookup(g)
		if err != nil {
			return err
		}
		if sec <= 1 {
			if allzero.Is(p[:n]) {
				p, off = p[n:], off+n
				continue
			}
			if g/int64(e.hdr.NumGTEsPerGT) >= int64(len(e.gd)) || e.gd[g/int64(e.hdr.NumGTEsPerGT)] == 0 {
				return fmt.Errorf("%w: no grain table for grain %d", diskimage.ErrUnsupported, g)
			}
			if e.next/sectorSize > 0xffffffff-int64(e.hdr.GrainSize) {
				return fmt.Errorf("vmdk: sparse extent full (grain offsets are 32-bit sectors)")
			}
			grain := make([]byte, e.grainBytes)
			copy(grain[in:], p[:n])
			if _, err := e.f.WriteAt(grain, e.next); err != nil {
				return fmt.Errorf("write grain %d at %#x: %w", g, e.next, err)
			}
			e.pending[g] = uint32(e.next / sectorSize)
			e.next += e.grainBytes
		} else {
			at := int64(sec)*sectorSize + in
			if _, err := e.f.WriteAt(p[:n], at); err != nil {
				return fmt.Errorf("write grain %d at %#x: %w", g, at, err)
			}
		}
		p, off = p[n:], off+n
	}
	return nil
}

// flush syncs new grains, then writes their entries into the grain table
// and its redundant copy (spec "Grain Directories": both must agree), then
// syncs again.
func (e *sparseExtent) flush() error {
	if !e.writable {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if len(e.pending) == 0 {
		return nil
	}
	per := int64(e.hdr.NumGTEsPerGT)
	var b [4]byte
	for g, sec := range e.pending {
		t, err := e.gt(g / per)
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(b[:], sec)
		for _, dir := range [][]uint32{e.gd, e.rgd} {
			if dir == nil || dir[g/per] == 0 {
				continue
			}
			at := int64(dir[g/per])*sectorSize + g%per*4
			if at+4 > e.fileSize {
				return fmt.Errorf("%w: grain table for grain %d past the end", diskimage.ErrCorrupt, g)
			}
			if _, err := e.f.WriteAt(b[:], at); err != nil {
				return fmt.Errorf("write grain table entry %d at %#x: %w", g, at, err)
			}
		}
		t[g%per] = sec
		delete(e.pending, g)
	}
	if err := e.f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// extentMap reports whether the run at off is allocated and how long it is
// (up to n bytes).
func (e *sparseExtent) extentMap(off, n int64) (bool, int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := off / e.grainBytes
	sec, err := e.lookup(g)
	if err != nil {
		return false, 0, err
	}
	// An unallocated grain of a differencing disk is the parent's: data
	// as far as this extent can tell.
	return sec > 1 || (sec == 0 && e.parent != nil), min(n, (g+1)*e.grainBytes-off), nil
}

func (e *sparseExtent) setParent(read func(p []byte, off int64) error) { e.parent = read }
func (e *sparseExtent) close() error                                   { return e.f.Close() }
