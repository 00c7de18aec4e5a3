package diskimage

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// File is the host file under a single-file image. *os.File implements it;
// MemFile does in memory, so fuzz targets and tests parse images without
// writing, syncing and removing a file per input.
type File interface {
	io.ReaderAt
	io.WriterAt
	// Stat describes the file; drivers use its size (and, for an
	// *os.File, its allocated blocks).
	Stat() (os.FileInfo, error)
	// Sync makes the writes so far durable.
	Sync() error
	// Truncate sets the file's size.
	Truncate(size int64) error
	// Close releases the file.
	Close() error
}

// errMemFileLimit is returned by a MemFile write or truncate past its Limit.
var errMemFileLimit = errors.New("diskimage: in-memory file limit reached")

// MemFile is a File held in a byte slice; safe for concurrent use.
type MemFile struct {
	mu   sync.RWMutex
	data []byte
	// Limit caps the size writes and truncates may grow the file to
	// (0: no cap), so a hostile image cannot make a fuzz run allocate
	// gigabytes where a real file would stay sparse.
	Limit int64
}

// NewMemFile returns a MemFile holding data (not copied) that may grow to limit bytes (0: no cap).
func NewMemFile(data []byte, limit int64) *MemFile { return &MemFile{data: data, Limit: limit} }

// Bytes returns the file's contents (not a copy).
func (m *MemFile) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.data
}

// ReadAt reads at off; reads past the end return io.EOF as *os.File does.
func (m *MemFile) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if off < 0 {
		return 0, fs.ErrInvalid
	}
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes at off, growing the file (the gap reads as zeros).
func (m *MemFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 {
		return 0, fs.ErrInvalid
	}
	end := off + int64(len(p))
	if end < off || (m.Limit > 0 && end > m.Limit) {
		return 0, errMemFileLimit
	}
	if end > int64(len(m.data)) {
		m.grow(end)
	}
	return copy(m.data[off:], p), nil
}

// grow extends data to n bytes of zeros; called with mu held.
func (m *MemFile) grow(n int64) {
	if n <= int64(cap(m.data)) {
		old := len(m.data)
		m.data = m.data[:n]
		clear(m.data[old:])
		return
	}
	nd := make([]byte, n, max(n, 2*int64(cap(m.data))))
	copy(nd, m.data)
	m.data = nd
}

// Truncate sets the size, zero-filling growth.
func (m *MemFile) Truncate(size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if size < 0 {
		return fs.ErrInvalid
	}
	if m.Limit > 0 && size > m.Limit {
		return errMemFileLimit
	}
	if size > int64(len(m.data)) {
		m.grow(size)
	} else {
		m.data = m.data[:size]
	}
	return nil
}

// Stat reports the size; the other fields are fixed.
func (m *MemFile) Stat() (os.FileInfo, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return memInfo(len(m.data)), nil
}

// Sync has nothing to do: memory is as durable as a MemFile gets.
func (m *MemFile) Sync() error { return nil }

// Close does nothing; the contents stay readable through Bytes.
func (m *MemFile) Close() error { return nil }

// memInfo is a MemFile's os.FileInfo: its size.
type memInfo int64

func (s memInfo) Name() string       { return "memfile" }
func (s memInfo) Size() int64        { return int64(s) }
func (s memInfo) Mode() fs.FileMode  { return 0o644 }
func (s memInfo) ModTime() time.Time { return time.Time{} }
func (s memInfo) IsDir() bool        { return false }
func (s memInfo) Sys() any           { return nil }
