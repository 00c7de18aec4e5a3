package pci

import (
	"bytes"
	"errors"
	"testing"
)

func fuzzDevice(t testing.TB) *ConfigSpace {
	c := NewConfigSpace(Header{VendorID: 0x1AF4, DeviceID: 0x1000, InterruptPin: 1})
	for _, b := range []struct {
		i    int
		k    BARKind
		size uint64
		pf   bool
	}{{0, BARIO, 32, false}, {1, BARMem32, 4096, false}, {2, BARMem64, 1 << 20, true}, {4, BARMem64, 1 << 34, false}} {
		if err := c.AddBAR(b.i, b.k, b.size, b.pf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AddCapability(0x11, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	return c
}

func rd32(c *ConfigSpace, off uint16) uint32 {
	d := make([]byte, 4)
	c.ConfigRead(off, d)
	return getLE(d)
}

func wr32(c *ConfigSpace, off uint16, v uint32) {
	d := make([]byte, 4)
	putLE(d, v)
	c.ConfigWrite(off, d)
}

func TestBARSizing(t *testing.T) {
	tests := []struct {
		name     string
		kind     BARKind
		size     uint64
		prefetch bool
		// read back after writing all ones to the BAR's dword(s)
		sizedLow, sizedHigh uint32
		addr                uint64
	}{
		{"I/O 32 bytes", BARIO, 32, false, 0xFFFFFFE1, 0, 0xC040},
		{"I/O 256 bytes", BARIO, 256, false, 0xFFFFFF01, 0, 0x1000},
		{"mem32 4 KiB", BARMem32, 4096, false, 0xFFFFF000, 0, 0xFEB00000},
		{"mem32 16 bytes prefetchable", BARMem32, 16, true, 0xFFFFFFF8, 0, 0xFEB01010},
		{"mem64 1 MiB prefetchable", BARMem64, 1 << 20, true, 0xFFF0000C, 0xFFFFFFFF, 0x8_0000_0000},
		{"mem64 16 GiB", BARMem64, 1 << 34, false, 0x00000004, 0xFFFFFFFC, 0x40_0000_0000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfigSpace(Header{})
			var calls []barChange
			c.OnBARChange = func(bar int, old, new uint64) { calls = append(calls, barChange{bar, old, new}) }
			if err := c.AddBAR(2, tt.kind, tt.size, tt.prefetch); err != nil {
				t.Fatal(err)
			}
			off := uint16(RegBAR0 + 8)
			// Linux's __pci_read_base: save, write ones, read, restore.
			wr32(c, off, 0xFFFFFFFF)
			if tt.kind == BARMem64 {
				wr32(c, off+4, 0xFFFFFFFF)
			}
			if got := rd32(c, off); got != tt.sizedLow {
				t.Fatalf("sized low dword = %#x, want %#x", got, tt.sizedLow)
			}
			if tt.kind == BARMem64 {
				if got := rd32(c, off+4); got != tt.sizedHigh {
					t.Fatalf("sized high dword = %#x, want %#x", got, tt.sizedHigh)
				}
			}
			wr32(c, off, uint32(tt.addr))
			if tt.kind == BARMem64 {
				wr32(c, off+4, uint32(tt.addr>>32))
			}
			if size, kind := c.BARSize(2); size != tt.size || kind != tt.kind {
				t.Fatalf("BARSize = %#x %v", size, kind)
			}
			if len(calls) != 0 || c.BARAddress(2) != Unmapped {
				t.Fatalf("BAR mapped with decoding off: %+v", calls)
			}
			enable := uint32(CommandMemory)
			if tt.kind == BARIO {
				enable = CommandIO
			}
			wr32(c, RegCommand, enable)
			if c.BARAddress(2) != tt.addr || len(calls) != 1 || calls[0] != (barChange{2, Unmapped, tt.addr}) {
				t.Fatalf("enable decode: address %#x, calls %+v", c.BARAddress(2), calls)
			}
			wr32(c, RegCommand, 0)
			if len(calls) != 2 || calls[1] != (barChange{2, tt.addr, Unmapped}) {
				t.Fatalf("disable decode: calls %+v", calls)
			}
		})
	}
}

func TestBARMoveWhileEnabled(t *testing.T) {
	c := NewConfigSpace(Header{})
	var calls []barChange
	c.OnBARChange = func(bar int, old, new uint64) { calls = append(calls, barChange{bar, old, new}) }
	if err := c.AddBAR(0, BARMem32, 4096, false); err != nil {
		t.Fatal(err)
	}
	wr32(c, RegBAR0, 0xE0000000)
	wr32(c, RegCommand, CommandMemory)
	wr32(c, RegBAR0, 0xE0001000)
	wr32(c, RegBAR0, 0xFFFFFFFF) // sizing with decode on: unmapped, not 0xFFFFF000
	want := []barChange{{0, Unmapped, 0xE0000000}, {0, 0xE0000000, 0xE0001000}, {0, 0xE0001000, Unmapped}}
	if len(calls) != len(want) {
		t.Fatalf("calls %+v, want %+v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("call %d = %+v, want %+v", i, calls[i], want[i])
		}
	}
	// Byte writes to a BAR work like dword ones.
	c.ConfigWrite(RegBAR0+3, []byte{0xD0})
	c.ConfigWrite(RegBAR0+1, []byte{0x00, 0x00})
	if a := c.BARAddress(0); a != 0xD0000000 {
		t.Fatalf("byte-programmed BAR = %#x", a)
	}
}

func TestAddBARErrors(t *testing.T) {
	for _, tt := range []struct {
		i    int
		k    BARKind
		size uint64
		pf   bool
	}{
		{6, BARMem32, 4096, false}, {-1, BARMem32, 4096, false}, {0, BARMem32, 3000, false},
		{0, BARMem32, 8, false}, {0, BARMem32, 1 << 32, false}, {5, BARMem64, 4096, false},
		{0, BARIO, 512, false}, {0, BARIO, 2, false}, {0, BARIO, 16, true}, {0, BARNone, 16, false},
		{1, BARMem32, 4096, false}, {0, BARMem32, 16, false},
	} {
		c := NewConfigSpace(Header{})
		if err := c.AddBAR(0, BARMem64, 4096, false); err != nil {
			t.Fatal(err)
		}
		if err := c.AddBAR(tt.i, tt.k, tt.size, tt.pf); !errors.Is(err, ErrBadBAR) {
			t.Errorf("AddBAR(%d, %v, %#x) = %v, want ErrBadBAR", tt.i, tt.k, tt.size, err)
		}
	}
}

func TestCapabilityChain(t *testing.T) {
	c := NewConfigSpace(Header{})
	if rd32(c, RegStatus-2)>>16&StatusCapList != 0 || c.U8(RegCapPtr) != 0 {
		t.Fatal("capability list present before any capability")
	}
	bodies := []struct {
		id   byte
		body []byte
	}{{0x09, []byte{14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}, {0x11, []byte{0x3F, 0, 1, 0, 0, 0, 2, 0, 0, 0}}, {0x05, make([]byte, 22)}, {0x09, nil}}
	var offs []uint16
	for _, b := range bodies {
		off, err := c.AddCapability(b.id, b.body)
		if err != nil {
			t.Fatal(err)
		}
		if off%4 != 0 || off < firstCapOffset {
			t.Fatalf("capability at %#x", off)
		}
		offs = append(offs, off)
	}
	if c.U16(RegStatus)&StatusCapList == 0 {
		t.Fatal("status capabilities-list bit clear")
	}
	// Walk the list as a guest does.
	p := c.U8(RegCapPtr)
	for i, b := range bodies {
		if uint16(p) != offs[i] {
			t.Fatalf("capability %d at %#x, want %#x", i, p, offs[i])
		}
		if c.U8(uint16(p)) != b.id {
			t.Fatalf("capability %d id %#x", i, c.U8(uint16(p)))
		}
		got := make([]byte, len(b.body))
		c.ConfigRead(uint16(p)+2, got)
		if !bytes.Equal(got, b.body) {
			t.Fatalf("capability %d body % x", i, got)
		}
		p = c.U8(uint16(p) + 1)
	}
	if p != 0 {
		t.Fatalf("list does not end: next %#x", p)
	}
	// Bodies are read-only until the device opens them up.
	off := offs[1]
	c.ConfigWrite(off+2, []byte{0xFF, 0xFF})
	if c.U16(off+2) != 0x003F {
		t.Fatal("capability body writable without a mask")
	}
	c.SetWriteMask(off+3, []byte{0xC0})
	c.ConfigWrite(off+2, []byte{0xFF, 0xFF})
	if c.U16(off+2) != 0xC03F {
		t.Fatalf("masked capability write = %#x", c.U16(off+2))
	}
	if _, err := c.AddCapability(0x10, make([]byte, 200)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("oversized capability: %v", err)
	}
}

func TestStatusW1C(t *testing.T) {
	c := NewConfigSpace(Header{})
	if _, err := c.AddCapability(0x05, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	c.SetStatus(1<<13 | 1<<15 | 1<<8)
	c.SetInterruptStatus(true)
	s := func() uint16 { return uint16(rd32(c, RegCommand) >> 16) }
	if got := s(); got != 1<<13|1<<15|1<<8|StatusCapList|statusIntx {
		t.Fatalf("status = %#x", got)
	}
	c.ConfigWrite(RegStatus, []byte{0x00, 1 << 5}) // clear bit 13 only
	if got := s(); got != 1<<15|1<<8|StatusCapList|statusIntx {
		t.Fatalf("status after W1C of bit 13 = %#x", got)
	}
	wr32(c, RegCommand, 0xFFFF_0000|CommandMemory) // dword write: clears all W1C bits, sets command
	if got := s(); got != StatusCapList|statusIntx {
		t.Fatalf("status after W1C of all = %#x", got)
	}
	if c.Command() != CommandMemory {
		t.Fatalf("command = %#x", c.Command())
	}
	c.SetInterruptStatus(false)
	if s()&statusIntx != 0 {
		t.Fatal("interrupt status not cleared")
	}
}

func TestOutOfRangeAccess(t *testing.T) {
	c := fuzzDevice(t)
	d := []byte{1, 2, 3, 4}
	c.ConfigRead(254, d)
	if d[2] != 0xFF || d[3] != 0xFF {
		t.Fatalf("read past 256 = % x", d)
	}
	c.ConfigWrite(0xFFFF, d)
	if c.U32(254) != 0xFFFFFFFF || c.U16(300) != 0xFFFF {
		t.Fatal("device-side read past the end not all ones")
	}
	c.SetU32(254, 0)
	c.SetWriteMask(255, []byte{1, 2, 3})
	if c.BARAddress(9) != Unmapped {
		t.Fatal("BARAddress of a bad index")
	}
	if s, k := c.BARSize(3); s != 0 || k != BARNone {
		t.Fatal("upper half of a 64-bit BAR reported as a BAR")
	}
}

func TestConfigSaveRestore(t *testing.T) {
	c := fuzzDevice(t)
	wr32(c, RegBAR0+4, 0xFEB00000)
	wr32(c, RegBAR0+8, 0x00000000)
	wr32(c, RegBAR0+12, 0x8)
	wr32(c, RegBAR0, 0xC000)
	wr32(c, RegCommand, CommandMemory|CommandIO|CommandBusMaster)
	c.SetU8(RegInterruptLine, 10)
	s := c.SaveState()

	r := fuzzDevice(t)
	var calls []barChange
	r.OnBARChange = func(bar int, old, new uint64) { calls = append(calls, barChange{bar, old, new}) }
	r.RestoreState(s)
	if got := r.SaveState(); got != s {
		t.Fatalf("restored config space differs:\n%x\n%x", got.Data, s.Data)
	}
	for i := range numBARs {
		if r.BARAddress(i) != c.BARAddress(i) {
			t.Errorf("BAR%d at %#x, want %#x", i, r.BARAddress(i), c.BARAddress(i))
		}
	}
	if len(calls) != 3 {
		t.Fatalf("restore reported %d BAR changes, want 3: %+v", len(calls), calls)
	}
	// A hostile snapshot cannot change the BAR layout bits.
	var bad ConfigState
	for i := range bad.Data {
		bad.Data[i] = 0xFF
	}
	r.RestoreState(bad)
	if got := rd32(r, RegBAR0); got != 0xFFFFFFE1 {
		t.Fatalf("BAR0 after hostile restore = %#x", got)
	}
}

func FuzzConfigSpace(f *testing.F) {
	f.Add([]byte{0x04, 0x03, 0x10, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x04, 0x02, 0x00})
	f.Fuzz(func(t *testing.T, prog []byte) {
		c := fuzzDevice(t)
		c.OnBARChange = func(bar int, old, new uint64) {
			if old == new || bar < 0 || bar >= numBARs {
				t.Fatalf("bogus BAR change %d %#x -> %#x", bar, old, new)
			}
		}
		for i := 0; i+2 < len(prog); i += 3 {
			off := uint16(prog[i]) | uint16(prog[i+1]&1)<<8
			data := make([]byte, 1<<(prog[i+1]>>1&3))
			for j := range data {
				data[j] = prog[i+2] ^ byte(j)
			}
			if prog[i+1]&0x80 != 0 {
				c.ConfigRead(off, data)
			} else {
				c.ConfigWrite(off, data)
			}
		}
		if c.U16(RegVendorID) != 0x1AF4 || c.U8(RegCapPtr) != firstCapOffset {
			t.Fatal("read-only registers changed")
		}
		if rd32(c, RegBAR0)&3 != 1 || rd32(c, RegBAR0+8)&0xF != 0xC {
			t.Fatal("BAR type bits changed")
		}
		c.RestoreState(c.SaveState())
	})
}
