// Package convert copies one disk image into another of any format, in
// parallel, skipping ranges that read as zeros so that the output stays
// sparse.
package convert

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/govisor/govisor/internal/allzero"
	"github.com/govisor/govisor/internal/diskimage"
)

// Errors of Convert.
var (
	ErrTooSmall      = errors.New("convert: destination smaller than source")
	ErrNoCompression = errors.New("convert: destination format cannot store compressed clusters")
)

// Options tune a conversion.
type Options struct {
	// Workers is the number of chunks converted in parallel; 0 means
	// GOMAXPROCS.
	Workers int
	// ChunkSize is the bytes per work item; 0 means 4 MiB. It is rounded
	// up to the destination's cluster size.
	ChunkSize int64
	// Compress stores data clusters compressed; dst must implement
	// diskimage.CompressedWriter.
	Compress bool
	// Progress, if set, is called (serially, with done increasing) as
	// chunks complete.
	Progress func(done, total int64)
}

// clusterSizer is implemented by formats with an allocation unit.
type clusterSizer interface{ ClusterSize() int64 }

// Convert copies the virtual disk src into dst, which must be freshly
// created (reading as zeros, no backing file) and at least as large.
// Ranges src maps as zero, and blocks whose data is all zeros, are not
// written. dst is flushed before Convert returns.
func Convert(ctx context.Context, src, dst diskimage.Image, opts Options) error {
	total := src.VirtualSize()
	if dst.VirtualSize() < total {
		return fmt.Errorf("%w: %d < %d bytes", ErrTooSmall, dst.VirtualSize(), total)
	}
	// gran is the unit zeros are detected in and writes are aligned to.
	gran := int64(4096)
	if cs, ok := dst.(clusterSizer); ok && cs.ClusterSize() > gran {
		gran = cs.ClusterSize()
	}
	var cw diskimage.CompressedWriter
	if opts.Compress {
		var ok bool
		if cw, ok = dst.(diskimage.CompressedWriter); !ok {
			return fmt.Errorf("%w: %s", ErrNoCompression, dst.Format())
		}
		gran = cw.CompressedClusterSize()
	}
	chunk := opts.ChunkSize
	if chunk <= 0 {
		chunk = 4 << 20
	}
	chunk = (max(chunk, gran) + gran - 1) / gran * gran
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int64)
	var done atomic.Int64
	var progMu sync.Mutex
	report := func(n int64) {
		d := done.Add(n)
		if opts.Progress != nil {
			progMu.Lock()
			opts.Progress(min(d, total), total)
			progMu.Unlock()
		}
	}
	c := &copier{src: src, dst: dst, cw: cw, gran: gran, total: total}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			for off := range jobs {
				n := min(chunk, total-off)
				if err := c.chunk(buf, off, n); err != nil {
					cancel(err)
					return
				}
				report(n)
			}
		}()
	}
feed:
	for off := int64(0); off < total; off += chunk {
		select {
		case jobs <- off:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if err := dst.Flush(); err != nil {
		return fmt.Errorf("convert: flush destination: %w", err)
	}
	return nil
}

type copier struct {
	src, dst diskimage.Image
	cw       diskimage.CompressedWriter
	gran     int64
	total    int64
}

// chunk copies [off, off+n) using buf.
func (c *copier) chunk(buf []byte, off, n int64) error {
	ext := []diskimage.Extent{{Offset: off, Length: n}}
	if m, ok := c.src.(diskimage.Mapper); ok {
		var err error
		if ext, err = m.Map(off, n); err != nil {
			return fmt.Errorf("convert: map source at %d: %w", off, err)
		}
	}
	// Data extents, widened to whole granules and merged.
	var runs []diskimage.Extent
	for _, e := range ext {
		if e.Zero || e.Length <= 0 {
			continue
		}
		s := max(off, e.Offset/c.gran*c.gran)
		end := min(off+n, (e.Offset+e.Length+c.gran-1)/c.gran*c.gran)
		if k := len(runs); k > 0 && runs[k-1].Offset+runs[k-1].Length >= s {
			runs[k-1].Length = max(runs[k-1].Length, end-runs[k-1].Offset)
			continue
		}
		runs = append(runs, diskimage.Extent{Offset: s, Length: end - s})
	}
	for _, r := range runs {
		b := buf[r.Offset-off : r.Offset-off+r.Length]
		if _, err := c.src.ReadAt(b, r.Offset); err != nil {
			return fmt.Errorf("convert: read source at %d: %w", r.Offset, err)
		}
		if err := c.write(b, r.Offset); err != nil {
			return err
		}
	}
	return nil
}

// write stores b at off, skipping all-zero granules and coalescing the
// others into as few writes as possible.
func (c *copier) write(b []byte, off int64) error {
	start := -1
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		if _, err := c.dst.WriteAt(b[start:end], off+int64(start)); err != nil {
			return fmt.Errorf("convert: write destination at %d: %w", off+int64(start), err)
		}
		start = -1
		return nil
	}
	for i := 0; i < len(b); i += int(c.gran) {
		g := b[i:min(len(b), i+int(c.gran))]
		if allzero.Is(g) {
			if err := flush(i); err != nil {
				return err
			}
			continue
		}
		if c.cw != nil {
			if err := c.cw.WriteCompressed(g, off+int64(i)); err != nil {
				return fmt.Errorf("convert: write compressed at %d: %w", off+int64(i), err)
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	return flush(len(b))
}
