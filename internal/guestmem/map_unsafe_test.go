package guestmem

import (
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestRAMIsHugeAligned(t *testing.T) {
	m, err := New([]Range{{GPA: 0, Size: 3 * 4096}, {GPA: 1 << 32, Size: 6 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, r := range m.Regions() {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(r.Host)))
		if start%hugeAlign != 0 {
			t.Errorf("region at GPA %#x: host address %#x is not 2 MiB-aligned", r.GPA, start)
		}
		r.Host[0], r.Host[len(r.Host)-1] = 1, 2
		// The slack mapRAM over-mapped is gone: the page after the region
		// is not mapped (unless another mapping happens to sit there).
		after := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(r.Host)), len(r.Host))), 4096)
		if err := unix.Madvise(after, unix.MADV_NORMAL); err == nil {
			t.Logf("region at GPA %#x: a mapping follows it (not necessarily the slack)", r.GPA)
		} else if !errors.Is(err, unix.ENOMEM) {
			t.Errorf("madvise after region %#x: %v", r.GPA, err)
		}
	}
	var b [1]byte
	if _, err := m.ReadAt(b[:], 1<<32+6<<20-1); err != nil || b[0] != 2 {
		t.Errorf("last byte: %v %d", err, b[0])
	}
}
