package snapshot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// MaxStateSize bounds the state file Open reads into memory; device state is
// kilobytes to megabytes, guest RAM lives in the memory file.
const MaxStateSize = 1 << 30

// Snapshot is an opened, verified snapshot.
type Snapshot struct {
	dir      string
	sections []section
	regions  []memRegion
	memSize  uint64
	hasMem   bool
}

// SectionInfo describes one section of a snapshot.
type SectionInfo struct {
	Name    string
	Version uint32
	Size    int
}

// Open reads and verifies a snapshot's state file (magic, version, every
// section's CRC-32C and the file CRC) and its memory index.
func Open(dir string) (*Snapshot, error) {
	path := filepath.Join(dir, StateFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: open: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("snapshot: stat %s: %w", path, err)
	}
	if st.Size() > MaxStateSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrCorrupt, path, st.Size(), MaxStateSize)
	}
	// Read at most the size stat reported (plus one byte to notice growth).
	data, err := io.ReadAll(io.LimitReader(f, st.Size()+1))
	if err != nil {
		return nil, fmt.Errorf("snapshot: read %s: %w", path, err)
	}
	s, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.dir = dir
	if s.hasMem {
		mst, err := os.Stat(filepath.Join(dir, MemoryFile))
		if err != nil {
			return nil, fmt.Errorf("snapshot: memory file: %w", err)
		}
		if uint64(mst.Size()) != s.memSize {
			return nil, fmt.Errorf("%w: memory file is %d bytes, index says %d", ErrTruncated, mst.Size(), s.memSize)
		}
	}
	return s, nil
}

// parse decodes a state file image into a Snapshot (without touching disk).
func parse(data []byte) (*Snapshot, error) {
	secs, err := parseState(data)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{}
	for _, sec := range secs {
		if sec.name == memorySection {
			if sec.version != memoryIndexVersion {
				return nil, fmt.Errorf("%w: memory index version %d, this govisor reads %d", ErrVersion, sec.version, memoryIndexVersion)
			}
			if s.regions, s.memSize, err = decodeIndex(sec.payload); err != nil {
				return nil, err
			}
			s.hasMem = true
			continue
		}
		if err := checkName(sec.name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		s.sections = append(s.sections, sec)
	}
	return s, nil
}

// Sections lists the sections in file order (the memory index excluded).
func (s *Snapshot) Sections() []SectionInfo {
	out := make([]SectionInfo, len(s.sections))
	for i, sec := range s.sections {
		out[i] = SectionInfo{Name: sec.name, Version: sec.version, Size: len(sec.payload)}
	}
	return out
}

// Section returns a section's version and payload; the payload must not be
// modified. A missing section is ErrNoSection.
func (s *Snapshot) Section(name string) (version uint32, payload []byte, err error) {
	for _, sec := range s.sections {
		if sec.name == name {
			return sec.version, sec.payload, nil
		}
	}
	return 0, nil, fmt.Errorf("%w: %q", ErrNoSection, name)
}

// MemoryLayout returns the guest RAM ranges (GPA and size) the snapshot holds.
func (s *Snapshot) MemoryLayout() []Range {
	out := make([]Range, len(s.regions))
	for i, r := range s.regions {
		out[i] = Range{GPA: r.GPA, Size: r.Size}
	}
	return out
}

// Range is a guest-physical address range.
type Range struct {
	GPA, Size uint64
}

// MapMemory maps each region of the memory file copy-on-write
// (MAP_PRIVATE, read-write): pages load lazily on first touch, guest writes
// go to private copies and the file is never modified. unmap releases the
// mappings; the returned regions must not be used after it.
func (s *Snapshot) MapMemory() (regions []Region, unmap func() error, err error) {
	if !s.hasMem {
		return nil, nil, ErrNoMemory
	}
	path := filepath.Join(s.dir, MemoryFile)
	// Read-only: a MAP_PRIVATE mapping may be writable without write access.
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot: open memory file: %w", err)
	}
	// The mappings keep the file referenced; the descriptor can go.
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot: stat memory file: %w", err)
	}
	if uint64(st.Size()) != s.memSize {
		return nil, nil, fmt.Errorf("%w: memory file is %d bytes, index says %d", ErrTruncated, st.Size(), s.memSize)
	}
	unmapAll := func() error {
		var errs []error
		for _, r := range regions {
			if err := unix.Munmap(r.Data); err != nil {
				errs = append(errs, fmt.Errorf("snapshot: unmap region %#x: %w", r.GPA, err))
			}
		}
		regions = nil
		return errors.Join(errs...)
	}
	for _, r := range s.regions {
		b, err := unix.Mmap(int(f.Fd()), int64(r.Offset), int(r.Size),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_NORESERVE)
		if err != nil {
			unmapAll()
			return nil, nil, fmt.Errorf("snapshot: map %d MiB of memory at %#x: %w", r.Size>>20, r.GPA, err)
		}
		regions = append(regions, Region{GPA: r.GPA, Data: b})
	}
	out := append([]Region(nil), regions...)
	return out, unmapAll, nil
}
