// Package qcow2 reads and writes QEMU copy-on-write version 2 and 3 disk
// images, following qemu's docs/interop/qcow2.txt (section names are cited
// in comments). The driver is random-access and safe for concurrent use:
// a mutex guards the metadata; data I/O to clusters already allocated
// proceeds without it.
//
// Crash safety ("what a crash may leave"): new data always goes to a new
// or exclusively owned cluster, and the metadata that makes it visible is
// written back later, in dependency order, by flushLocked:
//
//	data clusters + refcount blocks -> fdatasync -> refcount table (and
//	header switch if it moved) -> fdatasync -> L2 tables -> fdatasync ->
//	L1 table (and header) -> fdatasync -> refcount decrements of freed
//	clusters -> fdatasync
//
// so the disk never holds an L2/L1 entry pointing at unwritten data or at a
// cluster whose refcount is not yet recorded (at worst clusters leak, which
// check --repair reclaims), and a completed Flush makes every acknowledged
// write durable. As in qemu, a dirty L2 table evicted from the cache is
// written through the same sequence.
package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/govisor/govisor/internal/diskimage"
)

func init() {
	diskimage.Register(diskimage.Driver{
		Name:   "qcow2",
		Probe:  func(h []byte) bool { return len(h) >= 8 && binary.BigEndian.Uint32(h) == magic },
		Open:   Open,
		Create: Create,
	})
}

// Errors of the qcow2 driver.
var (
	ErrUnsupportedVersion = errors.New("qcow2: unsupported version")
	ErrOutOfRange         = errors.New("qcow2: access beyond end of disk")
	ErrReadOnlyImage      = fmt.Errorf("qcow2: %w", diskimage.ErrReadOnly)
	errCorrupt            = fmt.Errorf("qcow2: %w", diskimage.ErrCorrupt)
	errUnsupported        = fmt.Errorf("qcow2: %w", diskimage.ErrUnsupported)
)

// Table entry bits ("Cluster mapping").
const (
	l1OffMask      = 0x00fffffffffffe00
	l2OffMask      = 0x00fffffffffffe00
	flagCopied     = 1 << 63
	flagCompressed = 1 << 62
	flagZero       = 1 << 0
)

// Image is an open qcow2 image.
type Image struct {
	mu        sync.Mutex
	f         backend
	path      string
	ro        bool
	closed    bool
	h         *header
	cs        int64
	l2Entries uint64
	extL2     bool
	rbEntries uint64

	l1      []uint64
	l1Dirty bool
	oldL1   *extent // L1 table to free once the header points elsewhere
	l1Moved bool
	l2      *l2Cache
	zc      *zcache // decompressed clusters

	rt      []uint64
	rb      map[uint64]*refBlock
	rtDirty bool
	rtMoved bool
	oldRT   *extent

	hostEnd     int64    // next cluster to allocate
	pendingFree []uint64 // host clusters to unreference after L2/L1 are durable
	compFree    uint64   // free byte in the cluster packing compressed data, 0 if none
	dataDirty   bool
	lazy        bool // lazy refcounts: refcount writes wait for Close
	setDirty    bool // we set the dirty bit and must clear it on Close

	backing diskimage.Image
}

// Open opens the qcow2 image at path.
func Open(path string, opts diskimage.OpenOptions) (diskimage.Image, error) {
	flag := os.O_RDWR
	if opts.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	m, err := openBackend(fileBackend{f}, path, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

func openBackend(b backend, path string, opts diskimage.OpenOptions) (*Image, error) {
	size, err := b.Size()
	if err != nil {
		return nil, fmt.Errorf("qcow2: size of %s: %w", path, err)
	}
	buf := make([]byte, min(size, 1<<maxClusterBits))
	if err := readFull(b, buf, 0); err != nil {
		return nil, fmt.Errorf("qcow2: read header of %s: %w", path, err)
	}
	h, err := parseHeader(buf, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := &Image{f: b, path: path, ro: opts.ReadOnly, h: h, cs: 1 << h.clusterBits}
	m.extL2 = h.incompat&incExtL2 != 0
	m.l2Entries = uint64(m.cs) / 8
	if m.extL2 {
		m.l2Entries /= 2
	}
	m.rbEntries = uint64(m.cs) * 8 >> h.refcountOrder
	m.l2 = newL2Cache(m.cs)
	m.zc = newZcache(m.cs)
	m.hostEnd = (size + m.cs - 1) &^ (m.cs - 1)
	if err := m.loadL1(); err != nil {
		return nil, err
	}
	if !m.ro {
		if err := m.prepareWrite(opts); err != nil {
			return nil, err
		}
	}
	if h.backingFile != "" && !opts.NoBacking {
		m.backing, err = diskimage.OpenBacking(path, h.backingFile, h.backingFormat, opts)
		if err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

func (m *Image) loadL1() error {
	buf := make([]byte, int(m.h.l1Size)*8)
	if err := readFull(m.f, buf, int64(m.h.l1Off)); err != nil {
		return fmt.Errorf("qcow2: read L1 table at %#x: %w", m.h.l1Off, err)
	}
	m.l1 = make([]uint64, m.h.l1Size)
	for i := range m.l1 {
		m.l1[i] = binary.BigEndian.Uint64(buf[8*i:])
	}
	return nil
}

// prepareWrite checks that the image may be written and sets it up: it
// refuses images marked corrupt (unless repairing) and features we do not
// write, clears autoclear bits we do not maintain ("autoclear_features"),
// rebuilds refcounts of a dirty image and sets the dirty bit under lazy
// refcounts ("incompatible_features" bit 0, "compatible_features" bit 0).
func (m *Image) prepareWrite(opts diskimage.OpenOptions) error {
	h := m.h
	switch {
	case h.incompat&incCorrupt != 0 && !opts.Repair:
		return fmt.Errorf("%w: %s is marked corrupt; run check --repair or open it read-only", errCorrupt, m.path)
	case h.nbSnapshots != 0 && !opts.Repair:
		return fmt.Errorf("%w: writing images with internal snapshots", errUnsupported)
	case m.extL2:
		return fmt.Errorf("%w: writing images with extended L2 entries", errUnsupported)
	}
	if err := m.loadRefTable(); err != nil {
		return err
	}
	if h.autoclear != 0 {
		h.autoclear = 0
		if err := m.writeHeaderAt(offAutoclear, 0); err != nil {
			return err
		}
	}
	if h.incompat&incDirty != 0 && !opts.Repair {
		if _, err := m.rebuildRefcounts(); err != nil {
			return fmt.Errorf("qcow2: rebuild refcounts of dirty image %s: %w", m.path, err)
		}
		if err := m.setIncompat(h.incompat &^ incDirty); err != nil {
			return err
		}
	}
	if h.version == 3 && h.compat&compatLazyRefcounts != 0 && !opts.Repair {
		if err := m.setIncompat(h.incompat | incDirty); err != nil {
			return err
		}
		m.lazy, m.setDirty = true, true
	}
	return nil
}

// writeHeaderAt writes one 64-bit header field and syncs it.
func (m *Image) writeHeaderAt(off int64, v uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return m.writeHeaderBytes(off, b[:])
}

func (m *Image) writeHeaderBytes(off int64, b []byte) error {
	if _, err := m.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("qcow2: write header of %s: %w", m.path, err)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("qcow2: sync header of %s: %w", m.path, err)
	}
	return nil
}

func (m *Image) setIncompat(v uint64) error {
	m.h.incompat = v
	return m.writeHeaderAt(offIncompat, v)
}

// VirtualSize is the size of the disk in bytes.
func (m *Image) VirtualSize() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(m.h.size)
}

// Format returns "qcow2".
func (m *Image) Format() string { return "qcow2" }

// ClusterSize is the image's cluster size in bytes.
func (m *Image) ClusterSize() int64 { return m.cs }

// Info describes the image.
func (m *Image) Info() diskimage.Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := diskimage.Info{
		Format: "qcow2", Subformat: fmt.Sprintf("v%d", m.h.version),
		VirtualSize: int64(m.h.size), ActualSize: diskimage.ActualSize(m.path), ClusterSize: m.cs,
		BackingFile: m.h.backingFile, ReadOnly: m.ro,
		Dirty: m.h.incompat&incDirty != 0 && !m.setDirty, Corrupt: m.h.incompat&incCorrupt != 0,
	}
	if m.backing != nil {
		in.BackingChain = diskimage.BackingChain(diskimage.ResolveBacking(m.path, m.h.backingFile), m.backing)
	}
	return in
}

// lookup returns the L2 entry (and subcluster bitmap) of guest cluster vc;
// zero for an unallocated cluster. Callers hold m.mu.
func (m *Image) lookup(vc uint64) (uint64, uint64, error) {
	l1i := vc / m.l2Entries
	if l1i >= uint64(len(m.l1)) {
		return 0, 0, nil
	}
	off := m.l1[l1i] & l1OffMask
	if off == 0 {
		return 0, 0, nil
	}
	if off%uint64(m.cs) != 0 {
		return 0, 0, fmt.Errorf("%w: L2 table offset %#x unaligned (L1 index %d)", errCorrupt, off, l1i)
	}
	t, err := m.loadL2(off)
	if err != nil {
		return 0, 0, err
	}
	i := vc % m.l2Entries
	if t.bm != nil {
		return t.e[i], t.bm[i], nil
	}
	return t.e[i], 0, nil
}

// isZero reports whether a standard L2 entry has the v3 "reads as zeros"
// flag ("Standard Cluster Descriptor" bit 0; not used with extended L2).
func (m *Image) isZero(e uint64) bool {
	return m.h.version >= 3 && !m.extL2 && e&flagCompressed == 0 && e&flagZero != 0
}

func (m *Image) checkRange(off int64, n int, op string) (int, error) {
	size := int64(m.h.size)
	if off < 0 || off > size {
		return 0, fmt.Errorf("%w: %s at %d", ErrOutOfRange, op, off)
	}
	return int(min(int64(n), size-off)), nil
}

// Close flushes everything (including refcounts deferred by lazy
// refcounts), clears the dirty bit and closes the image and its backing chain.
func (m *Image) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	var err error
	if !m.ro {
		m.lazy = false
		err = m.flushLocked()
		if err == nil && m.setDirty {
			err = m.setIncompat(m.h.incompat &^ incDirty)
		}
	}
	m.closed = true
	if m.backing != nil {
		if berr := m.backing.Close(); err == nil {
			err = berr
		}
	}
	if cerr := m.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("qcow2: close %s: %w", m.path, cerr)
	}
	return err
}
