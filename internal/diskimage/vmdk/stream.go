package vmdk

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zlib"

	"github.com/govisor/govisor/internal/allzero"
)

// streamWriter produces a streamOptimized extent (spec "Stream-Optimized
// Compressed Sparse Extents"). That layout is write-once and must list
// grains in increasing LBA order, while a converter writes chunks in any
// order from parallel workers. So WriteAt lands in a sparse scratch file
// next to the output (unlinked at once, so nothing is left behind) and a
// bitmap records the touched grains; Close then writes, in grain order,
// each non-zero grain compressed, each grain table after its grains, the
// grain directory, the footer and the end-of-stream marker. Rewrites before
// Close are therefore fine; after Close the image is read-only.
type streamWriter struct {
	out      *os.File
	name     string
	scratch  *os.File
	capacity int64 // bytes
	cid      uint32

	mu      sync.Mutex
	touched []uint64 // one bit per grain
	closed  bool
}

const streamGrainBytes = defaultGrain * sectorSize

func newStreamWriter(out *os.File, capacity int64, cid uint32) (*streamWriter, error) {
	scratch, err := os.CreateTemp(filepath.Dir(out.Name()), ".vmdk-stream-*")
	if err != nil {
		return nil, fmt.Errorf("scratch file: %w", err)
	}
	os.Remove(scratch.Name())
	grains := (capacity + streamGrainBytes - 1) / streamGrainBytes
	return &streamWriter{out: out, name: filepath.Base(out.Name()), scratch: scratch, capacity: capacity, cid: cid,
		touched: make([]uint64, (grains+63)/64)}, nil
}

func (s *streamWriter) writeAt(p []byte, off int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: the image was closed", ErrStreamOrder)
	}
	first, last := off/streamGrainBytes, (off+int64(len(p))-1)/streamGrainBytes
	allTouched := true
	for g := first; g <= last; g++ {
		allTouched = allTouched && s.touched[g/64]&(1<<(g%64)) != 0
	}
	if !allTouched || !allzero.Is(p) {
		if _, err := s.scratch.WriteAt(p, off); err != nil {
			return fmt.Errorf("scratch write at %#x: %w", off, err)
		}
		for g := first; g <= last; g++ {
			s.touched[g/64] |= 1 << (g % 64)
		}
	}
	return nil
}

func (s *streamWriter) readAt(p []byte, off int64) error {
	n, err := s.scratch.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("scratch read at %#x: %w", off, err)
	}
	clear(p[n:])
	return nil
}

func (s *streamWriter) isTouched(g int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.touched[g/64]&(1<<(g%64)) != 0
}

// countWriter tracks the output offset so grain tables can point at grains.
type countWriter struct {
	w   *bufio.Writer
	pos int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.pos += int64(n)
	return n, err
}

// pad writes zeros up to the next sector boundary.
func (c *countWriter) pad() error {
	if r := c.pos % sectorSize; r != 0 {
		_, err := c.Write(make([]byte, sectorSize-r))
		return err
	}
	return nil
}

// finish writes the whole stream, in the order VMware and qemu expect:
// header, descriptor, then for each grain table its grains followed by a GT
// marker and the table, then a GD marker and directory, a footer marker and
// footer (the header again, with gdOffset), and the end-of-stream marker.
func (s *streamWriter) finish() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	sectors := uint64(s.capacity / sectorSize)
	grains := (s.capacity + streamGrainBytes - 1) / streamGrainBytes
	numGT := (grains + gtesPerGT - 1) / gtesPerGT
	hdr := SparseHeader{
		Version: 3, Flags: flagNewlineTest | flagCompressed | flagMarkers,
		Capacity: sectors, GrainSize: defaultGrain, DescriptorOffset: 1, DescriptorSize: descriptorSecs,
		NumGTEsPerGT: gtesPerGT, GDOffset: gdAtEnd, OverHead: defaultGrain, CompressAlgorithm: compressDeflate,
	}
	desc := newDescriptor("streamOptimized", s.name, int64(sectors), s.cid)
	descText := []byte(desc.String())
	if len(descText) > descriptorSecs*sectorSize {
		return fmt.Errorf("descriptor of %d bytes does not fit", len(descText))
	}
	if _, err := s.out.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := s.out.Truncate(0); err != nil {
		return err
	}
	w := &countWriter{w: bufio.NewWriterSize(s.out, 1<<20)}
	head := make([]byte, hdr.OverHead*sectorSize)
	copy(head, hdr.Marshal())
	copy(head[sectorSize:], descText)
	if _, err := w.Write(head); err != nil {
		return err
	}
	gd := make([]uint32, numGT)
	gt := make([]byte, gtesPerGT*4)
	for t := int64(0); t < numGT; t++ {
		clear(gt)
		used := false
		comp, err := s.compressTable(t, grains)
		if err != nil {
			return err
		}
		for i, c := range comp {
			if c == nil {
				continue
			}
			g := t*gtesPerGT + int64(i)
			var m [grainMarkerBytes]byte
			binary.LittleEndian.PutUint64(m[0:], uint64(g)*defaultGrain)
			binary.LittleEndian.PutUint32(m[8:], uint32(len(c)))
			if w.pos/sectorSize > 0xffffffff {
				return fmt.Errorf("stream larger than 2 TiB of compressed data")
			}
			binary.LittleEndian.PutUint32(gt[i*4:], uint32(w.pos/sectorSize))
			used = true
			if _, err := w.Write(m[:]); err != nil {
				return err
			}
			if _, err := w.Write(c); err != nil {
				return err
			}
			if err := w.pad(); err != nil {
				return err
			}
		}
		if !used {
			continue
		}
		if _, err := w.Write(marker(uint64(len(gt)/sectorSize), markerGT)); err != nil {
			return err
		}
		gd[t] = uint32(w.pos / sectorSize)
		if _, err := w.Write(gt); err != nil {
			return err
		}
	}
	gdBytes := make([]byte, (numGT*4+sectorSize-1)/sectorSize*sectorSize)
	for i, v := range gd {
		binary.LittleEndian.PutUint32(gdBytes[i*4:], v)
	}
	if _, err := w.Write(marker(uint64(len(gdBytes)/sectorSize), markerGD)); err != nil {
		return err
	}
	hdr.GDOffset = uint64(w.pos / sectorSize)
	if _, err := w.Write(gdBytes); err != nil {
		return err
	}
	for _, b := range [][]byte{marker(1, markerFooter), hdr.Marshal(), marker(0, markerEOS)} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	if err := w.w.Flush(); err != nil {
		return err
	}
	return s.out.Sync()
}

// compressTable compresses the grains of grain table t in parallel; the
// result has one entry per table slot, nil for grains that are untouched
// or all zeros. One table (512 grains, 32 MiB of data) bounds the memory.
func (s *streamWriter) compressTable(t, grains int64) ([][]byte, error) {
	out := make([][]byte, gtesPerGT)
	errs := make([]error, gtesPerGT)
	next := make(chan int64)
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			grain := make([]byte, streamGrainBytes)
			var buf bytes.Buffer
			zw, _ := zlib.NewWriterLevel(&buf, zlib.DefaultCompression)
			for i := range next {
				g := t*gtesPerGT + i
				if err := s.readAt(grain, g*streamGrainBytes); err != nil {
					errs[i] = err
					continue
				}
				if end := s.capacity - g*streamGrainBytes; end < streamGrainBytes {
					clear(grain[end:])
				}
				if allzero.Is(grain) {
					continue
				}
				buf.Reset()
				zw.Reset(&buf)
				zw.Write(grain)
				if err := zw.Close(); err != nil {
					errs[i] = fmt.Errorf("compress grain %d: %w", g, err)
					continue
				}
				out[i] = bytes.Clone(buf.Bytes())
			}
		}()
	}
	for i := int64(0); i < gtesPerGT; i++ {
		if g := t*gtesPerGT + i; g < grains && s.isTouched(g) {
			next <- i
		}
	}
	close(next)
	wg.Wait()
	return out, errors.Join(errs...)
}

func (s *streamWriter) close() error {
	err := s.finish()
	s.scratch.Close()
	if cerr := s.out.Close(); err == nil {
		err = cerr
	}
	return err
}
