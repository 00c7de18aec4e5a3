// Package raw implements the raw disk image format: the file is the disk,
// byte for byte. Holes in a sparse file read as zeros and are reported as
// such by Map (SEEK_DATA/SEEK_HOLE, lseek(2)).
package raw

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/diskimage"
)

func init() {
	diskimage.Register(diskimage.Driver{Name: "raw", Open: Open, Create: Create})
}

// ErrOutOfRange reports an access beyond the disk's virtual size.
var ErrOutOfRange = errors.New("raw: access beyond end of disk")

// Image is an open raw disk image.
type Image struct {
	f    *os.File
	df   *os.File // the same file opened O_DIRECT, or nil
	dio  direct   // what O_DIRECT transfers must be aligned to
	path string
	size int64
	ro   bool
	once sync.Once
	cerr error
}

// Open opens the raw image at path.
func Open(path string, opts diskimage.OpenOptions) (diskimage.Image, error) {
	flag := os.O_RDWR
	if opts.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	// Seeking to the end also gives the size of block devices.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw: size of %s: %w", path, err)
	}
	m := &Image{f: f, path: path, size: size, ro: opts.ReadOnly}
	if opts.Direct {
		if err := m.openDirect(flag); err != nil {
			f.Close()
			return nil, err
		}
	}
	return m, nil
}

// Create makes a sparse raw image of size bytes at path.
func Create(path string, size int64, opts diskimage.CreateOptions) (diskimage.Image, error) {
	if opts.BackingFile != "" {
		return nil, fmt.Errorf("%w: raw images have no backing file", diskimage.ErrUnsupported)
	}
	for k := range opts.Options {
		return nil, fmt.Errorf("%w: raw option %q", diskimage.ErrUnsupported, k)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("raw: create %s: %w", path, err)
	}
	return &Image{f: f, path: path, size: size}, nil
}

// VirtualSize is the size of the disk in bytes.
func (m *Image) VirtualSize() int64 { return m.size }

// Format returns "raw".
func (m *Image) Format() string { return "raw" }

// ReadAt reads the disk; bytes past the end of a shorter file read as zeros.
func (m *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > m.size {
		return 0, fmt.Errorf("%w: read at %d", ErrOutOfRange, off)
	}
	var eof error
	if int64(len(p)) > m.size-off {
		p, eof = p[:m.size-off], io.EOF
	}
	n, err := m.fileFor(p, off).ReadAt(p, off)
	if err != nil && m.df != nil && errors.Is(err, unix.EINVAL) {
		n, err = m.f.ReadAt(p, off) // alignment the probe did not foresee
	}
	if err == io.EOF {
		clear(p[n:])
		n, err = len(p), nil
	}
	if err != nil {
		return n, fmt.Errorf("raw: read %s at %d: %w", m.path, off, err)
	}
	return n, eof
}

// WriteAt writes the disk.
func (m *Image) WriteAt(p []byte, off int64) (int, error) {
	if m.ro {
		return 0, diskimage.ErrReadOnly
	}
	if off < 0 || off+int64(len(p)) > m.size {
		return 0, fmt.Errorf("%w: write of %d bytes at %d", ErrOutOfRange, len(p), off)
	}
	n, err := m.fileFor(p, off).WriteAt(p, off)
	if err != nil && m.df != nil && errors.Is(err, unix.EINVAL) {
		n, err = m.f.WriteAt(p, off)
	}
	if err != nil {
		return n, fmt.Errorf("raw: write %s at %d: %w", m.path, off, err)
	}
	return n, nil
}

// Flush makes written data durable (fdatasync).
func (m *Image) Flush() error {
	if m.ro {
		return nil
	}
	if err := unix.Fdatasync(int(m.f.Fd())); err != nil {
		return fmt.Errorf("raw: fdatasync %s: %w", m.path, err)
	}
	return nil
}

// Close flushes and closes the image; later calls return the same result.
func (m *Image) Close() error {
	m.once.Do(func() {
		m.cerr = m.Flush()
		if m.df != nil {
			m.df.Close()
		}
		if err := m.f.Close(); err != nil && m.cerr == nil {
			m.cerr = fmt.Errorf("raw: close %s: %w", m.path, err)
		}
	})
	return m.cerr
}

// Resize changes the size of the disk (truncate: growing leaves a hole).
func (m *Image) Resize(size int64) error {
	if m.ro {
		return diskimage.ErrReadOnly
	}
	if size < 0 {
		return fmt.Errorf("raw: resize to negative size %d", size)
	}
	if err := m.f.Truncate(size); err != nil {
		return fmt.Errorf("raw: resize %s: %w", m.path, err)
	}
	m.size = size
	return nil
}

// Info describes the image.
func (m *Image) Info() diskimage.Info {
	return diskimage.Info{Format: "raw", VirtualSize: m.size, ActualSize: diskimage.ActualSize(m.path), ReadOnly: m.ro}
}

// Map reports data and holes in [off, off+length) using SEEK_DATA and
// SEEK_HOLE; file systems without them report everything as data.
func (m *Image) Map(off, length int64) ([]diskimage.Extent, error) {
	end := min(off+length, m.size)
	if off < 0 || off > end {
		return nil, fmt.Errorf("%w: map at %d", ErrOutOfRange, off)
	}
	var out []diskimage.Extent
	add := func(o, l int64, zero bool) {
		if l <= 0 {
			return
		}
		if n := len(out); n > 0 && out[n-1].Zero == zero && out[n-1].Offset+out[n-1].Length == o {
			out[n-1].Length += l
			return
		}
		out = append(out, diskimage.Extent{Offset: o, Length: l, Zero: zero})
	}
	fd := int(m.f.Fd())
	for pos := off; pos < end; {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			add(pos, end-pos, true) // only a hole (or EOF) remains
			break
		}
		if err != nil {
			add(pos, end-pos, false) // no SEEK_DATA here: assume data
			break
		}
		data = min(data, end)
		add(pos, data-pos, true)
		if data >= end {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = end
		}
		hole = min(hole, end)
		add(data, hole-data, false)
		pos = hole
	}
	return out, nil
}
