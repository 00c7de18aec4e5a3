// Package guestmem holds a VM's guest-physical memory: host mappings of the
// RAM ranges and bounds-checked access to them by guest-physical address.
package guestmem

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange is returned for an access that is not entirely inside guest RAM.
var ErrOutOfRange = errors.New("guestmem: address outside guest RAM")

// Range is a guest-physical address range.
type Range struct {
	GPA, Size uint64
}

// Region is one contiguous RAM range and its host mapping.
type Region struct {
	GPA  uint64
	Host []byte
}

// Memory is the guest's RAM: non-overlapping regions sorted by address.
type Memory struct {
	regions   []Region
	size      uint64
	dirtyOnce sync.Once
	dirty     []dirtyBitmap
	anonymous bool // mapped by New: never-populated pages read as zero
}

// New maps anonymous host memory for each range. Pages are allocated lazily
// by the host kernel as the guest touches them (MAP_NORESERVE).
func New(ranges []Range) (*Memory, error) {
	m := &Memory{anonymous: true}
	rs := append([]Range(nil), ranges...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].GPA < rs[j].GPA })
	for i, r := range rs {
		if r.Size == 0 || r.Size%4096 != 0 || r.GPA%4096 != 0 || r.GPA+r.Size < r.GPA {
			m.Close()
			return nil, fmt.Errorf("guestmem: range %#x+%#x is not page-aligned", r.GPA, r.Size)
		}
		if i > 0 && rs[i-1].GPA+rs[i-1].Size > r.GPA {
			m.Close()
			return nil, fmt.Errorf("guestmem: ranges overlap at %#x", r.GPA)
		}
		b, err := mapRAM(r.Size)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("guestmem: map %d MiB of guest RAM at %#x: %w", r.Size>>20, r.GPA, err)
		}
		// Back RAM with transparent huge pages where the host allows them
		// only on request (THP "madvise" mode), as QEMU does: on hardware
		// KVM, 2 MiB host pages let EPT map guest memory with fewer TLB
		// misses. Best effort: a host without THP just keeps 4 KiB pages.
		unix.Madvise(b, unix.MADV_HUGEPAGE)
		m.regions = append(m.regions, Region{GPA: r.GPA, Host: b})
		m.size += r.Size
	}
	return m, nil
}

// FromRegions wraps existing host buffers as guest memory (tests, restore).
func FromRegions(regions []Region) *Memory {
	m := &Memory{regions: append([]Region(nil), regions...)}
	sort.Slice(m.regions, func(i, j int) bool { return m.regions[i].GPA < m.regions[j].GPA })
	for _, r := range m.regions {
		m.size += uint64(len(r.Host))
	}
	return m
}

// Close unmaps the memory. The Memory must not be used afterwards.
func (m *Memory) Close() {
	for _, r := range m.regions {
		switch {
		case r.Host == nil:
		case m.anonymous:
			unmapRAM(r.Host)
		default:
			unix.Munmap(r.Host)
		}
	}
	m.regions = nil
}

// Regions returns the RAM regions (do not modify).
func (m *Memory) Regions() []Region { return m.regions }

// Size is the total RAM in bytes.
func (m *Memory) Size() uint64 { return m.size }

// Slice returns the host bytes backing [gpa, gpa+n), which must lie in one region.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range m.regions {
		if gpa >= r.GPA && gpa-r.GPA < uint64(len(r.Host)) {
			off := gpa - r.GPA
			if n > uint64(len(r.Host))-off {
				break
			}
			return r.Host[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: %#x+%#x", ErrOutOfRange, gpa, n)
}

// ReadAt copies guest memory at guest-physical address off into p.
func (m *Memory) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative address", ErrOutOfRange)
	}
	b, err := m.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(p, b), nil
}

// WriteAt copies p into guest memory at guest-physical address off.
func (m *Memory) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative address", ErrOutOfRange)
	}
	b, err := m.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(b, p), nil
}
