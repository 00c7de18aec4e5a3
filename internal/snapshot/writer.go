package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"github.com/govisor/govisor/internal/allzero"
)

// File names inside a snapshot directory.
const (
	StateFile  = "state"
	MemoryFile = "memory"
)

// Region is one guest RAM range: its guest-physical address and its bytes.
type Region struct {
	GPA  uint64
	Data []byte
}

// Writer builds a snapshot in a temporary directory; Commit moves it into
// place, Abort (or a failed Commit) removes it, so a failed snapshot leaves
// nothing behind under the final name.
type Writer struct {
	dir, tmp string
	state    *State
	index    []byte // memory index payload, nil until WriteMemory
	done     bool
}

// Create starts a snapshot that Commit will place at dir, which must not exist.
func Create(dir string) (*Writer, error) {
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("snapshot: create %s: %w", dir, os.ErrExist)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("snapshot: create %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("snapshot: create %s: %w", dir, err)
	}
	return &Writer{dir: dir, tmp: tmp, state: NewState()}, nil
}

// AddSection adds a named section with the caller's version of its encoding.
func (w *Writer) AddSection(name string, version uint32, payload []byte) error {
	if w.done {
		return errors.New("snapshot: AddSection after Commit or Abort")
	}
	return w.state.AddSection(name, version, payload)
}

// WriteMemory writes guest RAM to the memory file, each region at a
// page-aligned offset. All-zero pages are skipped, leaving holes, so an idle
// guest's snapshot takes little disk space. Regions are written in parallel.
// It may be called once.
func (w *Writer) WriteMemory(regions []Region) error {
	if w.done {
		return errors.New("snapshot: WriteMemory after Commit or Abort")
	}
	if w.index != nil {
		return errors.New("snapshot: WriteMemory called twice")
	}
	rs := append([]Region(nil), regions...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].GPA < rs[j].GPA })
	var idx []memRegion
	var off uint64
	for i, r := range rs {
		size := uint64(len(r.Data))
		if size == 0 || size%PageSize != 0 || r.GPA%PageSize != 0 || r.GPA+size < r.GPA {
			return fmt.Errorf("snapshot: memory region %#x+%#x is not page-aligned", r.GPA, size)
		}
		if i > 0 && rs[i-1].GPA+uint64(len(rs[i-1].Data)) > r.GPA {
			return fmt.Errorf("snapshot: memory regions overlap at %#x", r.GPA)
		}
		idx = append(idx, memRegion{GPA: r.GPA, Size: size, Offset: off})
		off += size
	}
	if len(idx) > maxRegions {
		return fmt.Errorf("snapshot: %d memory regions, at most %d", len(idx), maxRegions)
	}
	f, err := os.OpenFile(filepath.Join(w.tmp, MemoryFile), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot: create memory file: %w", err)
	}
	defer f.Close()
	// The file's size comes from Truncate; unwritten ranges stay holes.
	if err := f.Truncate(int64(off)); err != nil {
		return fmt.Errorf("snapshot: size memory file to %d bytes: %w", off, err)
	}
	if err := writeSparse(f, rs, idx); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("snapshot: sync memory file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("snapshot: close memory file: %w", err)
	}
	w.index = encodeIndex(idx, off)
	return nil
}

// chunkSize is the unit of parallel work when writing memory.
const chunkSize = 16 << 20

// writeSparse writes the non-zero pages of every region with a pool of
// workers, each taking chunkSize pieces; runs of non-zero pages become one
// pwrite.
func writeSparse(f *os.File, rs []Region, idx []memRegion) error {
	type job struct {
		data []byte
		off  int64
	}
	jobs := make(chan job)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := writeChunk(f, j.data, j.off); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for i, r := range rs {
		for o := 0; o < len(r.Data); o += chunkSize {
			end := min(len(r.Data), o+chunkSize)
			jobs <- job{data: r.Data[o:end], off: int64(idx[i].Offset) + int64(o)}
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// writeChunk writes the non-zero page runs of data at file offset off.
func writeChunk(f *os.File, data []byte, off int64) error {
	start := -1
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		if _, err := f.WriteAt(data[start:end], off+int64(start)); err != nil {
			return fmt.Errorf("snapshot: write memory at file offset %#x: %w", off+int64(start), err)
		}
		start = -1
		return nil
	}
	for p := 0; p < len(data); p += PageSize {
		if allzero.Is(data[p : p+PageSize]) {
			if err := flush(p); err != nil {
				return err
			}
		} else if start < 0 {
			start = p
		}
	}
	return flush(len(data))
}

// Commit writes the state file, syncs everything and renames the temporary
// directory to its final name.
func (w *Writer) Commit() error {
	if w.done {
		return errors.New("snapshot: Commit after Commit or Abort")
	}
	w.done = true
	err := w.commit()
	if err != nil {
		os.RemoveAll(w.tmp)
	}
	return err
}

func (w *Writer) commit() error {
	if w.index != nil {
		if err := w.state.add(memorySection, memoryIndexVersion, w.index); err != nil {
			return err
		}
	}
	buf := w.state.Bytes()
	f, err := os.OpenFile(filepath.Join(w.tmp, StateFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot: create state file: %w", err)
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return fmt.Errorf("snapshot: write state file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("snapshot: sync state file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("snapshot: close state file: %w", err)
	}
	if err := syncDir(w.tmp); err != nil {
		return err
	}
	// rename(2) of a directory fails if the target is a non-empty
	// directory, so a snapshot that appeared meanwhile is never replaced.
	if err := os.Rename(w.tmp, w.dir); err != nil {
		return fmt.Errorf("snapshot: move snapshot into place: %w", err)
	}
	return syncDir(filepath.Dir(w.dir))
}

// Abort discards an uncommitted snapshot.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	if err := os.RemoveAll(w.tmp); err != nil {
		return fmt.Errorf("snapshot: remove %s: %w", w.tmp, err)
	}
	return nil
}

// syncDir fsyncs a directory so that entries created or renamed in it persist.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("snapshot: open %s to sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("snapshot: sync %s: %w", dir, err)
	}
	return nil
}
