package guestmem

import (
	"bytes"
	"errors"
	"testing"
)

func TestBoundsChecked(t *testing.T) {
	m, err := New([]Range{{0x100000000, 0x2000}, {0, 0x3000}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Size() != 0x5000 || len(m.Regions()) != 2 || m.Regions()[0].GPA != 0 {
		t.Fatalf("size %#x regions %d", m.Size(), len(m.Regions()))
	}
	want := []byte("hello")
	if _, err := m.WriteAt(want, 0x100000ffe); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := m.ReadAt(got, 0x100000ffe); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %q, %v", got, err)
	}
	for _, c := range []struct{ gpa, n uint64 }{
		{0x2ffe, 4},         // crosses the end of low RAM
		{0x3000, 1},         // hole
		{0x100001fff, 2},    // crosses the end of high RAM
		{^uint64(0) - 1, 4}, // wraps
		{0, ^uint64(0)},     // absurd length
	} {
		if _, err := m.Slice(c.gpa, c.n); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Slice(%#x, %#x) = %v, want ErrOutOfRange", c.gpa, c.n, err)
		}
	}
	if _, err := m.ReadAt(got, -1); !errors.Is(err, ErrOutOfRange) {
		t.Error("negative address accepted")
	}
}

func TestRejectsBadRanges(t *testing.T) {
	for _, rs := range [][]Range{{{0, 100}}, {{0, 0x2000}, {0x1000, 0x1000}}, {{0x10, 0x1000}}} {
		if _, err := New(rs); err == nil {
			t.Errorf("New(%v) accepted", rs)
		}
	}
}

func TestMarkDirty(t *testing.T) {
	m, err := New([]Range{{0, 64 * PageSize}, {1 << 32, 8 * PageSize}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.MarkDirty(PageSize-1, 2)            // pages 0 and 1
	m.MarkDirty(63*PageSize, 10*PageSize) // page 63, clipped at the region end
	m.MarkDirty(1<<32+PageSize, 1)        // high region page 1
	m.MarkDirty(100*PageSize, 1)          // hole: ignored
	d := m.TakeDirty()
	if d[0][0] != 1|2|1<<63 || d[1][0] != 2 {
		t.Fatalf("dirty = %b / %b", d[0][0], d[1][0])
	}
	if d := m.TakeDirty(); d[0][0] != 0 || d[1][0] != 0 {
		t.Fatal("TakeDirty did not clear the bitmap")
	}
}

func TestNeverWritten(t *testing.T) {
	m, err := New([]Range{{0, 256 * PageSize}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.WriteAt([]byte{1}, 5*PageSize)
	m.WriteAt([]byte{1}, 200*PageSize+7)
	bm := m.NeverWritten(0)
	if bm == nil {
		t.Skip("SKIPPED: /proc/self/pagemap is not readable here")
	}
	for _, p := range []int{5, 200} {
		if bm[p/64]&(1<<(p%64)) != 0 {
			t.Errorf("written page %d reported as never written", p)
		}
	}
	if bm[0]&1 == 0 || bm[3]>>63 == 0 {
		t.Errorf("untouched pages not reported: %x", bm)
	}
	if FromRegions(m.Regions()).NeverWritten(0) != nil {
		t.Error("memory not mapped by New must give no hint")
	}
}
