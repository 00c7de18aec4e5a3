// Package virtqueuetest is a fake virtio guest driver for tests and
// benchmarks: guest memory backed by a byte slice, and a driver that lays
// out split virtqueues, adds direct and indirect descriptor chains and
// reads used entries, as the Linux virtio_ring driver would.
package virtqueuetest

import (
	"errors"
	"fmt"
	"sync"
)

// ErrOutOfRange is returned for an access outside the fake guest RAM.
var ErrOutOfRange = errors.New("virtqueuetest: address outside guest RAM")

// PageSize is the dirty-tracking granule.
const PageSize = 4096

// Memory is fake guest RAM at [Base, Base+len): it implements
// virtqueue.Memory and records dirty pages.
type Memory struct {
	Base uint64
	buf  []byte

	mu    sync.Mutex
	dirty []bool // one per page
	next  uint64 // bump allocator, offset into buf
}

// ErrNoSpace is returned when Alloc runs out of fake guest RAM.
var ErrNoSpace = errors.New("virtqueuetest: fake guest RAM exhausted")

// Alloc reserves n bytes of guest RAM aligned to align (a power of two)
// and returns its address; memory is never freed.
func (m *Memory) Alloc(n, align uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := (m.next + align - 1) &^ (align - 1)
	if a > uint64(len(m.buf)) || n > uint64(len(m.buf))-a {
		return 0, fmt.Errorf("%w: %d bytes", ErrNoSpace, n)
	}
	m.next = a + n
	return m.Base + a, nil
}

// NewMemory returns size bytes of zeroed guest RAM at base.
func NewMemory(base, size uint64) *Memory {
	return &Memory{Base: base, buf: alignedBuffer(size), dirty: make([]bool, (size+PageSize-1)/PageSize)}
}

// Slice implements virtqueue.Memory.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	if gpa < m.Base || gpa-m.Base > uint64(len(m.buf)) || n > uint64(len(m.buf))-(gpa-m.Base) {
		return nil, fmt.Errorf("%w: %#x+%#x", ErrOutOfRange, gpa, n)
	}
	o := gpa - m.Base
	return m.buf[o : o+n : o+n], nil
}

// MarkDirty implements virtqueue.Memory.
func (m *Memory) MarkDirty(gpa, n uint64) {
	if n == 0 || gpa < m.Base {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := (gpa - m.Base) / PageSize; p <= (gpa-m.Base+n-1)/PageSize && p < uint64(len(m.dirty)); p++ {
		m.dirty[p] = true
	}
}

// Dirty reports whether the page holding gpa was marked dirty.
func (m *Memory) Dirty(gpa uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := (gpa - m.Base) / PageSize
	return gpa >= m.Base && p < uint64(len(m.dirty)) && m.dirty[p]
}

// ClearDirty forgets all dirty marks.
func (m *Memory) ClearDirty() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.dirty)
}

// Bytes returns the whole RAM (for tests that corrupt rings on purpose).
func (m *Memory) Bytes() []byte { return m.buf }

// Write copies p to guest memory at gpa.
func (m *Memory) Write(gpa uint64, p []byte) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(b, p)
	return nil
}

// Read copies guest memory at gpa into p.
func (m *Memory) Read(gpa uint64, p []byte) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}
