package vhdx

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/govisor/govisor/internal/diskimage"
)

// maxReplayDescriptors bounds the work a hostile log can cause: a 1 MiB
// log holds at most 32768 descriptors.
const maxReplayDescriptors = 1 << 16

// replayTarget receives the writes of a log replay.
type replayTarget interface {
	io.WriterAt
	// zero makes [off, off+n) read as zeros.
	zero(off, n int64) error
	// extend grows the file to at least size bytes.
	extend(size int64) error
}

// fileTarget replays into the file itself (read-write opens).
type fileTarget struct{ f diskimage.File }

func (t fileTarget) WriteAt(p []byte, off int64) (int, error) { return t.f.WriteAt(p, off) }

func (t fileTarget) zero(off, n int64) error {
	zeros := make([]byte, min(n, 1*mib))
	for done := int64(0); done < n; {
		k := min(int64(len(zeros)), n-done)
		if _, err := t.f.WriteAt(zeros[:k], off+done); err != nil {
			return err
		}
		done += k
	}
	return nil
}

func (t fileTarget) extend(size int64) error {
	st, err := t.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < size {
		return t.f.Truncate(size)
	}
	return nil
}

// overlay replays a log in memory for read-only opens: the file is left
// untouched and reads see the replayed state. Data sectors are kept as
// 4 KiB pages; zero ranges are merged into a sorted list. A page written
// after a zero range survives it and one written before is dropped, so
// reads apply the file, then the zero ranges, then the pages.
type overlay struct {
	f     diskimage.File
	size  int64
	pages map[int64][]byte
	zeros [][2]int64 // [start, end), sorted and merged by finish
}

func newOverlay(f diskimage.File, size int64) *overlay {
	return &overlay{f: f, size: size, pages: map[int64][]byte{}}
}

func (o *overlay) WriteAt(p []byte, off int64) (int, error) {
	if off%logSector != 0 || len(p) != logSector {
		return 0, fmt.Errorf("%w: unaligned replay write at %#x", ErrBadLog, off)
	}
	o.pages[off] = append([]byte(nil), p...)
	return len(p), nil
}

func (o *overlay) zero(off, n int64) error {
	if int64(len(o.pages)) < n/logSector {
		for k := range o.pages {
			if k >= off && k < off+n {
				delete(o.pages, k)
			}
		}
	} else {
		for k := off; k < off+n; k += logSector {
			delete(o.pages, k)
		}
	}
	o.zeros = append(o.zeros, [2]int64{off, off + n})
	return nil
}

func (o *overlay) extend(size int64) error {
	o.size = max(o.size, size)
	return nil
}

// finish sorts and merges the zero ranges.
func (o *overlay) finish() {
	sort.Slice(o.zeros, func(i, j int) bool { return o.zeros[i][0] < o.zeros[j][0] })
	var out [][2]int64
	for _, z := range o.zeros {
		if k := len(out); k > 0 && z[0] <= out[k-1][1] {
			out[k-1][1] = max(out[k-1][1], z[1])
			continue
		}
		out = append(out, z)
	}
	o.zeros = out
}

// ReadAt reads the replayed view of the file.
func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	var short error
	if int64(len(p)) > o.size-off {
		p, short = p[:o.size-off], io.EOF
	}
	n, err := o.f.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, err
	}
	clear(p[n:]) // extended past the real end of file
	end := off + int64(len(p))
	i := sort.Search(len(o.zeros), func(i int) bool { return o.zeros[i][1] > off })
	for ; i < len(o.zeros) && o.zeros[i][0] < end; i++ {
		s, e := max(o.zeros[i][0], off), min(o.zeros[i][1], end)
		clear(p[s-off : e-off])
	}
	for pg := off / logSector * logSector; pg < end; pg += logSector {
		if d, ok := o.pages[pg]; ok {
			s, e := max(pg, off), min(pg+logSector, end)
			copy(p[s-off:e-off], d[s-pg:e-pg])
		}
	}
	return len(p), short
}
