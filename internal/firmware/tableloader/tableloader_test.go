package tableloader

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestEncoding(t *testing.T) {
	l := New()
	if err := l.Allocate("etc/acpi/tables", 100, 64, ZoneHigh); err != nil {
		t.Fatal(err)
	}
	if err := l.AddPointer("etc/acpi/tables", "etc/acpi/tables", 40, 4); err != nil {
		t.Fatal(err)
	}
	if err := l.AddChecksum("etc/acpi/tables", 9, 0, 50); err != nil {
		t.Fatal(err)
	}
	b := l.Bytes()
	if len(b) != 3*EntrySize {
		t.Fatalf("%d bytes, want %d", len(b), 3*EntrySize)
	}
	le := binary.LittleEndian
	checks := []struct {
		name      string
		got, want uint32
	}{
		{"allocate command", le.Uint32(b), CmdAllocate},
		{"allocate align", le.Uint32(b[4+56:]), 64},
		{"allocate zone", uint32(b[4+60]), uint32(ZoneHigh)},
		{"pointer command", le.Uint32(b[128:]), CmdAddPointer},
		{"pointer offset", le.Uint32(b[128+4+112:]), 40},
		{"pointer size", uint32(b[128+4+116]), 4},
		{"checksum command", le.Uint32(b[256:]), CmdAddChecksum},
		{"checksum offset", le.Uint32(b[256+4+56:]), 9},
		{"checksum start", le.Uint32(b[256+4+60:]), 0},
		{"checksum length", le.Uint32(b[256+4+64:]), 50},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	if string(b[128+4:128+4+15]) != "etc/acpi/tables" || b[128+4+15] != 0 {
		t.Errorf("destination name not NUL-padded: %q", b[128+4:128+4+56])
	}
}

func TestRefused(t *testing.T) {
	l := New()
	_ = l.Allocate("a", 16, 16, ZoneFSeg)
	tests := []struct {
		name string
		err  error
	}{
		{"align not a power of two", l.Allocate("b", 16, 3, ZoneHigh)},
		{"unknown zone", l.Allocate("b", 16, 4, 7)},
		{"allocated twice", l.Allocate("a", 16, 16, ZoneHigh)},
		{"name too long", l.Allocate(string(make([]byte, 56)), 1, 1, ZoneHigh)},
		{"pointer to an unallocated file", l.AddPointer("a", "b", 0, 4)},
		{"pointer past the end", l.AddPointer("a", "a", 13, 4)},
		{"pointer of odd size", l.AddPointer("a", "a", 0, 3)},
		{"checksum byte outside its range", l.AddChecksum("a", 12, 0, 4)},
		{"checksum past the end", l.AddChecksum("a", 0, 0, 17)},
	}
	for _, tc := range tests {
		if !errors.Is(tc.err, ErrBad) {
			t.Errorf("%s: %v, want ErrBad", tc.name, tc.err)
		}
	}
}
