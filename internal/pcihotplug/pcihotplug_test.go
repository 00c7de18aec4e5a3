package pcihotplug

import (
	"errors"
	"slices"
	"testing"
)

// rig is a controller with its SCI level and ejected slots recorded.
type rig struct {
	c       *Controller
	levels  []bool
	ejected []int
}

func newRig(slots uint32) *rig {
	r := &rig{}
	r.c = New(slots, func(l bool) { r.levels = append(r.levels, l) }, func(s int) { r.ejected = append(r.ejected, s) })
	return r
}

func (r *rig) level() bool { return len(r.levels) > 0 && r.levels[len(r.levels)-1] }

func read(dev interface{ Read(uint64, []byte) }, off uint64, n int) uint64 {
	b := make([]byte, n)
	dev.Read(off, b)
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func write(dev interface{ Write(uint64, []byte) }, off uint64, n int, v uint64) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	dev.Write(off, b)
}

const hpSlots = 0xFFFFFFF0 // slots 4-31

func TestProtocol(t *testing.T) {
	type step struct {
		do        func(r *rig) error
		wantLevel bool
	}
	gpe := func(r *rig) interface {
		Read(uint64, []byte)
		Write(uint64, []byte)
	} {
		return r.c.GPEDevice()
	}
	enable := func(r *rig) error { write(gpe(r), 2, 1, 1<<GPEBit); return nil }
	ack := func(r *rig) error { write(gpe(r), 0, 1, 1<<GPEBit); return nil }
	for _, tc := range []struct {
		name  string
		steps []step
		check func(t *testing.T, r *rig)
	}{
		{"insert before enable raises nothing", []step{
			{func(r *rig) error { return r.c.Insert(5) }, false},
		}, func(t *testing.T, r *rig) {
			if got := read(gpe(r), 0, 2); got != 1<<GPEBit {
				t.Errorf("GPE0_STS = %#x", got)
			}
		}},
		{"insert, enable, ack", []step{
			{func(r *rig) error { return r.c.Insert(5) }, false},
			{enable, true},
			{ack, false},
		}, func(t *testing.T, r *rig) {
			if got := read(r.c.Device(), RegUp, 4); got != 1<<5 {
				t.Errorf("UP = %#x, want slot 5", got)
			}
			if got := read(r.c.Device(), RegUp, 4); got != 0 {
				t.Errorf("UP after a read = %#x, want cleared", got)
			}
		}},
		{"enabled insert fires at once", []step{
			{enable, false},
			{func(r *rig) error { return r.c.Insert(31) }, true},
		}, func(t *testing.T, r *rig) {
			if got := read(r.c.Device(), RegUp, 4); got != 1<<31 {
				t.Errorf("UP = %#x, want slot 31", got)
			}
		}},
		{"removal then eject", []step{
			{enable, false},
			{func(r *rig) error { return r.c.RequestRemoval(6) }, true},
			{ack, false},
			{func(r *rig) error { write(r.c.Device(), RegEject, 4, 1<<6); return nil }, false},
		}, func(t *testing.T, r *rig) {
			if !slices.Equal(r.ejected, []int{6}) {
				t.Errorf("ejected %v, want [6]", r.ejected)
			}
			if got := read(r.c.Device(), RegDown, 4); got != 0 {
				t.Errorf("DOWN after eject = %#x", got)
			}
			if r.c.Ejections() != 1 {
				t.Errorf("Ejections = %d", r.c.Ejections())
			}
		}},
		{"removal cancels a pending insert", []step{
			{func(r *rig) error { return r.c.Insert(7) }, false},
			{func(r *rig) error { return r.c.RequestRemoval(7) }, false},
		}, func(t *testing.T, r *rig) {
			up, down := read(r.c.Device(), RegUp, 4), read(r.c.Device(), RegDown, 4)
			if up != 0 || down != 1<<7 {
				t.Errorf("UP %#x DOWN %#x", up, down)
			}
		}},
		{"byte reads clear only the bytes read", []step{
			{func(r *rig) error { return r.c.Insert(4) }, false},
			{func(r *rig) error { return r.c.Insert(12) }, false},
		}, func(t *testing.T, r *rig) {
			if got := read(r.c.Device(), RegUp+1, 1); got != 1<<(12-8) {
				t.Errorf("UP byte 1 = %#x", got)
			}
			if got := read(r.c.Device(), RegUp, 4); got != 1<<4 {
				t.Errorf("UP = %#x, want only slot 4 left", got)
			}
		}},
		{"ejecting fixed slots is ignored", []step{
			{func(r *rig) error { write(r.c.Device(), RegEject, 4, 0xF); return nil }, false},
			{func(r *rig) error { write(r.c.Device(), RegUp, 4, 0xFFFFFFFF); return nil }, false},
		}, func(t *testing.T, r *rig) {
			if len(r.ejected) != 0 {
				t.Errorf("ejected %v", r.ejected)
			}
		}},
		{"ack with other bits keeps the event", []step{
			{enable, false},
			{func(r *rig) error { return r.c.Insert(9) }, true},
			{func(r *rig) error { write(gpe(r), 0, 2, 0xFFFD); return nil }, true},
		}, nil},
		{"disable lowers the line", []step{
			{enable, false},
			{func(r *rig) error { return r.c.Insert(9) }, true},
			{func(r *rig) error { write(gpe(r), 2, 2, 0); return nil }, false},
		}, func(t *testing.T, r *rig) {
			if got := read(gpe(r), 2, 2); got != 0 {
				t.Errorf("GPE0_EN = %#x", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(hpSlots)
			for i, s := range tc.steps {
				if err := s.do(r); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if r.level() != s.wantLevel {
					t.Fatalf("step %d: SCI level %v, want %v", i, r.level(), s.wantLevel)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestBadSlots(t *testing.T) {
	c := New(hpSlots, nil, nil)
	for _, s := range []int{-1, 0, 3, 32, 1000} {
		if err := c.Insert(s); !errors.Is(err, ErrNotHotplug) {
			t.Errorf("Insert(%d) = %v", s, err)
		}
		if err := c.RequestRemoval(s); !errors.Is(err, ErrNotHotplug) {
			t.Errorf("RequestRemoval(%d) = %v", s, err)
		}
	}
	if c.Slots() != hpSlots {
		t.Errorf("Slots = %#x", c.Slots())
	}
}

func TestOutOfRangeOffsets(t *testing.T) {
	c := New(hpSlots, nil, nil)
	if got := read(c.GPEDevice(), 4, 1); got != 0xFF {
		t.Errorf("GPE byte 4 = %#x", got)
	}
	if got := read(c.Device(), RegEject, 4); got != 0 {
		t.Errorf("EJECT reads %#x", got)
	}
	if got := read(c.Device(), 64, 4); got != 0 {
		t.Errorf("offset 64 reads %#x", got)
	}
}

func TestSaveRestore(t *testing.T) {
	r := newRig(hpSlots)
	write(r.c.GPEDevice(), 2, 1, 1<<GPEBit)
	if err := r.c.Insert(8); err != nil {
		t.Fatal(err)
	}
	if err := r.c.RequestRemoval(10); err != nil {
		t.Fatal(err)
	}
	st := r.c.SaveState()
	r2 := newRig(hpSlots)
	r2.c.RestoreState(st)
	if got := r2.c.SaveState(); got != st {
		t.Errorf("restored %+v, saved %+v", got, st)
	}
	if !r2.level() {
		t.Error("restored pending event does not raise the SCI")
	}
	// Bits of slots the new controller cannot hot-plug are dropped.
	r3 := newRig(1 << 8)
	r3.c.RestoreState(st)
	if got := r3.c.SaveState(); got.Up != 1<<8 || got.Down != 0 {
		t.Errorf("restore into fewer slots: %+v", got)
	}
}

// FuzzRegisters drives the registers with guest accesses of any width and
// offset: no panics, no ejection of slots that are not hot-pluggable, and
// the SCI level always matches STS & EN.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0, 2, 2, 0xFF, 1, 8, 4, 0x10, 0, 0, 0})
	f.Add([]byte{1, 0, 1, 0xFF, 0, 8, 1, 0xFF})
	f.Add([]byte{0, 0, 4, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := newRig(hpSlots)
		for len(ops) >= 3 {
			kind, off, n := ops[0]%4, uint64(ops[1]%16), int(ops[2]%8)+1
			ops = ops[3:]
			if n > len(ops) {
				n = len(ops)
			}
			data := ops[:n]
			ops = ops[n:]
			switch kind {
			case 0:
				r.c.GPEDevice().Write(off, data)
			case 1:
				r.c.Device().Write(off, data)
			case 2:
				r.c.GPEDevice().Read(off, make([]byte, n))
			case 3:
				r.c.Device().Read(off, make([]byte, n))
				_ = r.c.Insert(int(off) + 4)
			}
			st := r.c.SaveState()
			if want := st.GPESts&st.GPEEn != 0; r.level() != want && (len(r.levels) > 0 || want) {
				t.Fatalf("SCI level %v, STS %#x EN %#x", r.level(), st.GPESts, st.GPEEn)
			}
		}
		for _, s := range r.ejected {
			if hpSlots&(1<<s) == 0 {
				t.Fatalf("ejected fixed slot %d", s)
			}
		}
	})
}
