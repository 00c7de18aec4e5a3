package qcow2

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"runtime"
	"sync"

	kflate "github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Compressed clusters ("Compressed Clusters Descriptor"): with
// x = 62 - (cluster_bits - 8), bits 0..x-1 of the L2 entry hold the host
// offset of the compressed data and bits x..61 the number of 512-byte
// sectors it occupies beyond the first. compression_type 0 is raw deflate
// with a 4 KiB window (qemu inflates with windowBits -12), 1 is zstd.

const (
	compZlib = 0
	compZstd = 1
	// zlibWindow is the deflate window qemu's decompressor accepts.
	zlibWindow = 4096
)

// compressedRange returns the host offset and the byte length the
// compressed cluster e covers, rounded to whole sectors as qemu counts it.
func (m *Image) compressedRange(e uint64) (uint64, uint64) {
	x := 62 - (m.h.clusterBits - 8)
	off := e & (1<<x - 1)
	nsec := (e >> x) & (1<<(m.h.clusterBits-8) - 1)
	start := off &^ 511
	return off, start + (nsec+1)*512 - off
}

var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		return err
	}
	return d
}}

// flateReaders reuses inflaters: each holds a 32 KiB window and its
// Huffman tables, too much to allocate per cluster read.
var flateReaders sync.Pool

// flateReader is an inflater of r from the pool, or a new one.
func flateReader(r io.Reader) (io.ReadCloser, error) {
	if fr, ok := flateReaders.Get().(io.ReadCloser); ok {
		if rs, ok := fr.(flate.Resetter); ok {
			if err := rs.Reset(r, nil); err != nil {
				return nil, err
			}
			return fr, nil
		}
	}
	return flate.NewReader(r), nil
}

// readCompressed returns the decompressed guest cluster of entry e.
func (m *Image) readCompressed(e uint64) ([]byte, error) {
	off, n := m.compressedRange(e)
	src := make([]byte, n) // at most two clusters
	if err := readFull(m.f, src, int64(off)); err != nil {
		return nil, fmt.Errorf("qcow2: read compressed cluster at %#x: %w", off, err)
	}
	out := make([]byte, m.cs)
	var r io.Reader
	switch m.h.compressionType {
	case compZlib:
		fr, err := flateReader(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("qcow2: inflate: %w", err)
		}
		defer flateReaders.Put(fr)
		r = fr
	case compZstd:
		v := zstdDecoders.Get()
		d, ok := v.(*zstd.Decoder)
		if !ok {
			return nil, fmt.Errorf("qcow2: zstd decoder: %v", v)
		}
		defer zstdDecoders.Put(d)
		if err := d.Reset(bytes.NewReader(src)); err != nil {
			return nil, fmt.Errorf("qcow2: zstd: %w", err)
		}
		r = d
	default:
		return nil, fmt.Errorf("%w: compression type %d", errUnsupported, m.h.compressionType)
	}
	// The stored data is rounded up to sectors: stop at one cluster.
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("%w: compressed cluster at %#x: %v", errCorrupt, off, err)
	}
	return out, nil
}

var (
	zstdEncOnce sync.Once
	zstdEnc     *zstd.Encoder
	zstdEncErr  error
)

// compress returns data compressed with the image's compression type.
func (m *Image) compress(data []byte) ([]byte, error) {
	if m.h.compressionType == compZstd {
		zstdEncOnce.Do(func() {
			zstdEnc, zstdEncErr = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
		})
		if zstdEncErr != nil {
			return nil, fmt.Errorf("qcow2: zstd: %w", zstdEncErr)
		}
		return zstdEnc.EncodeAll(data, nil), nil
	}
	var b bytes.Buffer
	w, err := kflate.NewWriterWindow(&b, zlibWindow)
	if err != nil {
		return nil, fmt.Errorf("qcow2: deflate: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return nil, fmt.Errorf("qcow2: deflate: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("qcow2: deflate: %w", err)
	}
	return b.Bytes(), nil
}

// CompressedClusterSize is the unit WriteCompressed takes: one cluster.
func (m *Image) CompressedClusterSize() int64 { return m.cs }

// WriteCompressed stores one guest cluster at off compressed, as
// `qemu-img convert -c` does; data that does not shrink, or a cluster
// already allocated, is written normally.
func (m *Image) WriteCompressed(data []byte, off int64) error {
	if m.ro {
		return ErrReadOnlyImage
	}
	size := m.VirtualSize()
	if off%m.cs != 0 || int64(len(data)) > m.cs || off < 0 || off+int64(len(data)) > size ||
		(int64(len(data)) < m.cs && off+int64(len(data)) != size) {
		return fmt.Errorf("qcow2: compressed write of %d bytes at %d is not one cluster", len(data), off)
	}
	buf := data
	if int64(len(data)) < m.cs {
		buf = make([]byte, m.cs)
		copy(buf, data)
	}
	comp, err := m.compress(buf)
	if err != nil {
		return err
	}
	if int64(len(comp)) > m.cs-512 {
		_, err := m.WriteAt(data, off)
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	vc := uint64(off / m.cs)
	e, _, err := m.lookup(vc)
	if err != nil {
		return err
	}
	if e&l2OffMask != 0 || e&flagCompressed != 0 {
		return m.allocWrite(vc, data, 0, e)
	}
	host, err := m.allocBytes(uint64(len(comp)))
	if err != nil {
		return err
	}
	if _, err := m.f.WriteAt(comp, int64(host)); err != nil {
		return fmt.Errorf("qcow2: write compressed data at %#x: %w", host, err)
	}
	m.dataDirty = true
	t, err := m.l2For(vc)
	if err != nil {
		return err
	}
	x := 62 - (m.h.clusterBits - 8)
	nsec := (host+uint64(len(comp))-1)>>9 - host>>9
	t.e[vc%m.l2Entries] = flagCompressed | nsec<<x | host
	t.dirty = true
	m.unref(e, 0)
	return nil
}

// allocBytes reserves n (< cluster size) bytes for compressed data, packed
// after the previous compressed cluster when it fits in the same host
// cluster. Each compressed cluster holds one reference to every host
// cluster it touches, as qemu counts them.
func (m *Image) allocBytes(n uint64) (uint64, error) {
	cs := uint64(m.cs)
	if m.compFree != 0 && m.compFree%cs+n <= cs {
		off := m.compFree
		if err := m.addRef(off&^(cs-1), 1); err != nil {
			return 0, err
		}
		m.compFree = (off + n + 511) &^ 511 // qemu counts whole sectors
		if m.compFree%cs == 0 {
			m.compFree = 0
		}
		return off, nil
	}
	off, err := m.allocClusters(1)
	if err != nil {
		return 0, err
	}
	m.compFree = (off + n + 511) &^ 511
	if m.compFree%cs == 0 {
		m.compFree = 0
	}
	return off, nil
}
