package diskimage

import (
	"io"
	"io/fs"
	"os"
	"sync"
)

// cowPage is the unit CowFile copies on write.
const cowPage = 4096

// CowFile is a File over a read-only byte slice whose writes go to copied
// pages, so a fuzz target can open, write and discard a large image per
// input without copying it. Safe for concurrent use.
type CowFile struct {
	mu    sync.RWMutex
	base  []byte
	pages map[int64][]byte // page number -> contents, for written pages
	size  int64
	// Limit caps the size writes and truncates may grow the file to (0: no cap).
	Limit int64
}

// NewCowFile returns a CowFile reading base (never written) that may grow to limit bytes (0: no cap).
func NewCowFile(base []byte, limit int64) *CowFile {
	return &CowFile{base: base, pages: map[int64][]byte{}, size: int64(len(base)), Limit: limit}
}

// page returns page pg for reading: its copy, the base, or nil (zeros).
// Called with mu held.
func (c *CowFile) page(pg int64) []byte {
	if p, ok := c.pages[pg]; ok {
		return p
	}
	if off := pg * cowPage; off < int64(len(c.base)) {
		return c.base[off:min(off+cowPage, int64(len(c.base)))]
	}
	return nil
}

// ReadAt reads at off; reads past the end return io.EOF as *os.File does.
func (c *CowFile) ReadAt(p []byte, off int64) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if off < 0 {
		return 0, fs.ErrInvalid
	}
	if off >= c.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), c.size-off))
	for done := 0; done < n; {
		pos := off + int64(done)
		pg, in := pos/cowPage, int(pos%cowPage)
		k := min(n-done, cowPage-in)
		dst := p[done : done+k]
		src := c.page(pg)
		m := 0
		if in < len(src) {
			m = copy(dst, src[in:])
		}
		clear(dst[m:])
		done += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes at off into copied pages, growing the file.
func (c *CowFile) WriteAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := off + int64(len(p))
	if off < 0 || end < off {
		return 0, fs.ErrInvalid
	}
	if c.Limit > 0 && end > c.Limit {
		return 0, errMemFileLimit
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		pg, in := pos/cowPage, int(pos%cowPage)
		cp, ok := c.pages[pg]
		if !ok {
			cp = make([]byte, cowPage)
			copy(cp, c.page(pg))
			c.pages[pg] = cp
		}
		done += copy(cp[in:], p[done:])
	}
	c.size = max(c.size, end)
	return len(p), nil
}

// Truncate sets the size; what a shrink cut off reads as zeros if the
// file grows again.
func (c *CowFile) Truncate(size int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if size < 0 {
		return fs.ErrInvalid
	}
	if c.Limit > 0 && size > c.Limit {
		return errMemFileLimit
	}
	if size < c.size {
		c.base = c.base[:min(int64(len(c.base)), size)]
		for pg, cp := range c.pages {
			switch start := pg * cowPage; {
			case start >= size:
				delete(c.pages, pg)
			case start+cowPage > size:
				clear(cp[size-start:])
			}
		}
	}
	c.size = size
	return nil
}

// Stat reports the size.
func (c *CowFile) Stat() (os.FileInfo, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return memInfo(c.size), nil
}

// Sync has nothing to do.
func (c *CowFile) Sync() error { return nil }

// Close does nothing.
func (c *CowFile) Close() error { return nil }
