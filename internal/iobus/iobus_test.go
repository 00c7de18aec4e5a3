package iobus

import "testing"

type reg struct {
	last [8]byte
	off  uint64
}

func (r *reg) Read(off uint64, d []byte)  { copy(d, r.last[:]); r.off = off }
func (r *reg) Write(off uint64, d []byte) { copy(r.last[:], d); r.off = off }

func TestBusDispatch(t *testing.T) {
	var b Bus
	a, c := &reg{}, &reg{}
	if err := b.Register(0x3f8, 8, a); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(0x60, 1, c); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ base, size uint64 }{{0x3f0, 9}, {0x3ff, 1}, {0x3f9, 1}, {0, 0}, {^uint64(0), 2}} {
		if err := b.Register(bad.base, bad.size, &reg{}); err == nil {
			t.Errorf("Register(%#x,%#x) accepted an overlapping or empty range", bad.base, bad.size)
		}
	}
	if !b.Write(0x3fb, []byte{0x42}) || a.off != 3 || a.last[0] != 0x42 {
		t.Fatalf("write not dispatched at offset 3: %+v", a)
	}
	d := []byte{0}
	if !b.Read(0x3fb, d) || d[0] != 0x42 {
		t.Fatalf("read back %#x", d[0])
	}
	if b.Read(0x400, d) || d[0] != 0xff {
		t.Fatalf("unclaimed read = %#x, want 0xff and false", d[0])
	}
	if !b.Unregister(0x60) || b.Write(0x60, d) {
		t.Fatal("unregister did not remove the range")
	}
}
