package smbios

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
)

// structure is one parsed structure.
type structure struct {
	typ     byte
	handle  uint16
	f       []byte // the whole formatted area, header included
	strings []string
}

// str is the structure's string at the field at off (1-based index).
func (s structure) str(off int) string {
	i := int(s.f[off])
	if i == 0 || i > len(s.strings) {
		return ""
	}
	return s.strings[i-1]
}

// parse walks a structure table as a reader of DSP0134 6.1 does.
func parse(t *testing.T, b []byte) []structure {
	t.Helper()
	var out []structure
	for len(b) > 0 {
		if len(b) < 4 || int(b[1]) < 4 || int(b[1]) > len(b) {
			t.Fatalf("structure %d: bad header % x", len(out), b[:min(4, len(b))])
		}
		s := structure{typ: b[0], handle: binary.LittleEndian.Uint16(b[2:]), f: b[:b[1]]}
		rest := b[b[1]:]
		end := bytes.Index(rest, []byte{0, 0})
		if end < 0 {
			t.Fatalf("structure type %d: string-set not terminated", s.typ)
		}
		if end > 0 {
			s.strings = strings.Split(string(rest[:end]), "\x00")
		}
		out = append(out, s)
		b = rest[end+2:]
		if s.typ == 127 && len(b) != 0 {
			t.Fatalf("%d bytes after the end-of-table structure", len(b))
		}
	}
	return out
}

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func TestBuild(t *testing.T) {
	uuid := [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8}
	tb, err := Build(Config{UUID: uuid, Serial: "web1", CPUs: 4,
		RAM: []MemRange{{0, 0xA0000}, {0x100000, 3<<30 - 0x100000}, {1 << 32, 2 << 30}}})
	if err != nil {
		t.Fatal(err)
	}
	ss := parse(t, tb.Structures)
	wantLen := map[byte]int{1: 0x1B, 3: 0x16, 4: 0x2A, 16: 0x17, 17: 0x28, 19: 0x1F, 32: 0x0B, 127: 4}
	var types []byte
	handles := map[uint16]bool{}
	largest := 0
	for _, s := range ss {
		types = append(types, s.typ)
		if len(s.f) != wantLen[s.typ] {
			t.Errorf("type %d: length %#x, want %#x", s.typ, len(s.f), wantLen[s.typ])
		}
		if handles[s.handle] {
			t.Errorf("handle %d used twice", s.handle)
		}
		handles[s.handle] = true
		size := len(s.f) + 2
		for _, str := range s.strings {
			size += len(str) + 1
		}
		if len(s.strings) > 0 {
			size--
		}
		largest = max(largest, size)
	}
	if !bytes.Equal(types, []byte{1, 3, 4, 16, 17, 19, 19, 19, 32, 127}) {
		t.Errorf("structure types %v", types)
	}
	sys := ss[0]
	if sys.str(4) != "govisor" || sys.str(5) != "govisor VM" || sys.str(6) != "" || sys.str(7) != "web1" || sys.str(0x1A) != "Virtual Machine" {
		t.Errorf("type 1 strings: %q %q %q %q %q", sys.str(4), sys.str(5), sys.str(6), sys.str(7), sys.str(0x1A))
	}
	// 7.2.1: dmidecode prints 12345678-9abc-def0-0102-030405060708 from these bytes.
	if want := []byte{0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8}; !bytes.Equal(sys.f[8:24], want) {
		t.Errorf("type 1 UUID bytes % x, want % x", sys.f[8:24], want)
	}
	cpu := ss[2]
	if cpu.f[0x23] != 4 || cpu.f[0x24] != 4 || cpu.f[0x25] != 4 || cpu.str(4) != "CPU 0" {
		t.Errorf("type 4: cores %d/%d threads %d socket %q", cpu.f[0x23], cpu.f[0x24], cpu.f[0x25], cpu.str(4))
	}
	total := uint64(0xA0000) + 3<<30 - 0x100000 + 2<<30
	arr, dev := ss[3], ss[4]
	if got := uint64(binary.LittleEndian.Uint32(arr.f[7:])) << 10; got != total {
		t.Errorf("type 16 capacity %d, want %d", got, total)
	}
	if binary.LittleEndian.Uint16(dev.f[4:]) != arr.handle {
		t.Error("type 17 does not name the memory array")
	}
	if got := uint64(binary.LittleEndian.Uint16(dev.f[0x0C:])) << 20; got != total&^(1<<20-1) {
		t.Errorf("type 17 size %d MiB, want %d", got>>20, total>>20)
	}
	// The range above 4 GiB still fits the KiB fields (ending below 4 TiB).
	hi := ss[7]
	if s, e := binary.LittleEndian.Uint32(hi.f[4:]), binary.LittleEndian.Uint32(hi.f[8:]); uint64(s)<<10 != 1<<32 || uint64(e) != (1<<32+2<<30-1)>>10 {
		t.Errorf("type 19 above 4 GiB: %#x-%#x KiB", s, e)
	}

	a := tb.Anchor
	if len(a) != 0x1F || string(a[:4]) != "_SM_" || string(a[0x10:0x15]) != "_DMI_" {
		t.Fatalf("anchor % x", a)
	}
	if sum(a) != 0 || sum(a[0x10:]) != 0 {
		t.Error("anchor checksums do not sum to zero")
	}
	if a[6] != 2 || a[7] != 8 || a[0x1E] != 0x28 {
		t.Errorf("anchor version %d.%d BCD %#x", a[6], a[7], a[0x1E])
	}
	if int(binary.LittleEndian.Uint16(a[0x16:])) != len(tb.Structures) || int(binary.LittleEndian.Uint16(a[0x1C:])) != len(ss) {
		t.Error("anchor length or count differs from the table")
	}
	if int(binary.LittleEndian.Uint16(a[8:])) != largest {
		t.Errorf("anchor max structure size %d, want %d", binary.LittleEndian.Uint16(a[8:]), largest)
	}
}

// TestBuildLarge: a machine past the 16- and 32-bit fields uses the
// extended ones (type 16's capacity, 17's size, 19's addresses).
func TestBuildLarge(t *testing.T) {
	total := uint64(8 << 40) // 8 TiB: KiB no longer fits 32 bits
	tb, err := Build(Config{CPUs: 255, RAM: []MemRange{{0, 2 << 30}, {1 << 32, total - 2<<30}}})
	if err != nil {
		t.Fatal(err)
	}
	ss := parse(t, tb.Structures)
	arr, dev, hi := ss[3], ss[4], ss[6]
	if binary.LittleEndian.Uint32(arr.f[7:]) != 0x80000000 || binary.LittleEndian.Uint64(arr.f[0x0F:]) != total {
		t.Errorf("type 16 extended capacity: %#x %d", binary.LittleEndian.Uint32(arr.f[7:]), binary.LittleEndian.Uint64(arr.f[0x0F:]))
	}
	if binary.LittleEndian.Uint16(dev.f[0x0C:]) != 0x7FFF || uint64(binary.LittleEndian.Uint32(dev.f[0x1C:])) != total>>20 {
		t.Errorf("type 17 extended size: %#x %d", binary.LittleEndian.Uint16(dev.f[0x0C:]), binary.LittleEndian.Uint32(dev.f[0x1C:]))
	}
	if binary.LittleEndian.Uint32(hi.f[4:]) != 0xFFFFFFFF || binary.LittleEndian.Uint64(hi.f[0x0F:]) != 1<<32 ||
		binary.LittleEndian.Uint64(hi.f[0x17:]) != 1<<32+total-2<<30-1 {
		t.Errorf("type 19 extended addresses: % x", hi.f[4:])
	}
}

// TestBuildProperty: random machines always give a well-formed table
// whose anchor matches it.
func TestBuildProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for range 500 {
		var ram []MemRange
		at := uint64(0)
		for range 1 + rng.IntN(4) {
			size := (1 + rng.Uint64N(1<<30)) << 12
			ram = append(ram, MemRange{at, size})
			at += size + rng.Uint64N(1<<32)
		}
		serial := strings.Repeat("x", rng.IntN(3))
		tb, err := Build(Config{CPUs: 1 + rng.IntN(255), RAM: ram, Serial: serial})
		if err != nil {
			t.Fatal(err)
		}
		ss := parse(t, tb.Structures)
		if sum(tb.Anchor) != 0 || int(binary.LittleEndian.Uint16(tb.Anchor[0x1C:])) != len(ss) || ss[len(ss)-1].typ != 127 {
			t.Fatalf("inconsistent table for %+v", ram)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	for _, c := range []Config{{CPUs: 0, RAM: []MemRange{{0, 1 << 20}}}, {CPUs: 256, RAM: []MemRange{{0, 1 << 20}}}, {CPUs: 1}} {
		if _, err := Build(c); err == nil {
			t.Errorf("Build(%+v) took it", c)
		}
	}
}
