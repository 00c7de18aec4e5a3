package acpi

import (
	"bytes"
	"testing"
)

// The expected byte sequences below are worked out by hand from the AML
// grammar (ACPI 6.5 section 20.2) and resource descriptor layouts (6.4).

func TestPkgLength(t *testing.T) {
	for _, tc := range []struct {
		body int
		want []byte
	}{
		{0, []byte{0x01}},
		{7, []byte{0x08}},
		{62, []byte{0x3F}},                        // largest one-byte length (63)
		{63, []byte{0x41, 0x04}},                  // 65 = 0x41: nibble 1, then 0x04
		{4093, []byte{0x4F, 0xFF}},                // 4095, largest two-byte length
		{4094, []byte{0x81, 0x00, 0x01}},          // 4097 = 0x1001
		{1<<20 - 4, []byte{0x8F, 0xFF, 0xFF}},     // 0xFFFFF, largest three-byte
		{1 << 20, []byte{0xC4, 0x00, 0x00, 0x01}}, // 0x100004
	} {
		got, err := pkgLength(tc.body)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("pkgLength(%d) = % X, %v; want % X", tc.body, got, err, tc.want)
		}
	}
	if _, err := pkgLength(1 << 28); err == nil {
		t.Error("pkgLength(1<<28) succeeded")
	}
}

func TestNameString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // empty: an error is expected
	}{
		{"_SB", "_SB_"},
		{"PCI0", "PCI0"},
		{`\_SB`, `\_SB_`},
		{`\_SB.PCI0`, "\\\x2E_SB_PCI0"},
		{`_SB.PCI0.ISA`, "\x2F\x03_SB_PCI0ISA_"},
		{"", ""},
		{"TOOLONG", ""},
		{"1ABC", ""},
		{"pci0", ""},
		{"_SB..X", ""},
	} {
		got, err := nameString(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("nameString(%q) = % X, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("nameString(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestInteger(t *testing.T) {
	for _, tc := range []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{5, []byte{0x0A, 0x05}},
		{0xFF, []byte{0x0A, 0xFF}},
		{0x100, []byte{0x0B, 0x00, 0x01}},
		{0x12345678, []byte{0x0C, 0x78, 0x56, 0x34, 0x12}},
		{1 << 32, []byte{0x0E, 0, 0, 0, 0, 1, 0, 0, 0}},
		{^uint64(0), []byte{0xFF}},
	} {
		var a amlBuilder
		a.integer(tc.v)
		if got, err := a.bytes(); err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("integer(%#x) = % X, %v; want % X", tc.v, got, err, tc.want)
		}
	}
}

func TestEISAID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want uint32
	}{
		{"PNP0A03", 0x030AD041},
		{"PNP0A08", 0x080AD041},
		{"PNP0501", 0x0105D041},
		{"PNP0B00", 0x000BD041},
	} {
		got, err := eisaIDValue(tc.id)
		if err != nil || got != tc.want {
			t.Errorf("EISAID(%q) = %#08x, %v; want %#08x", tc.id, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "PNP0A0", "pnp0A03", "PNP0A0G", "PNP0A033"} {
		if _, err := eisaIDValue(bad); err == nil {
			t.Errorf("EISAID(%q) succeeded", bad)
		}
	}
	var a amlBuilder
	a.name("_HID", func() { a.eisaID("PNP0A03") })
	want := []byte{0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x0A, 0x03}
	if got, err := a.bytes(); err != nil || !bytes.Equal(got, want) {
		t.Errorf("Name(_HID, EisaId(PNP0A03)) = % X, %v; want % X", got, err, want)
	}
}

func TestObjects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(a *amlBuilder)
		want  []byte
	}{
		{"S5 package", func(a *amlBuilder) {
			a.name("_S5", func() { a.pkgOf(5, 5, 0, 0) })
		}, []byte{0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00}},
		{"empty device", func(a *amlBuilder) {
			a.device("COM1", func() {})
		}, []byte{0x5B, 0x82, 0x05, 'C', 'O', 'M', '1'}},
		{"scope with name", func(a *amlBuilder) {
			a.scope(`\_SB`, func() { a.name("_UID", func() { a.integer(0) }) })
		}, []byte{0x10, 0x0C, '\\', '_', 'S', 'B', '_', 0x08, '_', 'U', 'I', 'D', 0x00}},
		{"buffer", func(a *amlBuilder) {
			a.buffer([]byte{1, 2, 3})
		}, []byte{0x11, 0x06, 0x0A, 0x03, 1, 2, 3}},
		{"long device", func(a *amlBuilder) {
			// 4 name bytes + 60 bytes of names: body 64 needs a 2-byte PkgLength of 66.
			a.device("BIG0", func() {
				for i := 0; i < 10; i++ {
					a.name("_UID", func() { a.integer(0) })
				}
			})
		}, append([]byte{0x5B, 0x82, 0x42, 0x04, 'B', 'I', 'G', '0'},
			bytes.Repeat([]byte{0x08, '_', 'U', 'I', 'D', 0x00}, 10)...)},
	} {
		var a amlBuilder
		tc.build(&a)
		if got, err := a.bytes(); err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: % X, %v; want % X", tc.name, got, err, tc.want)
		}
	}
}

func TestBuilderErrors(t *testing.T) {
	for name, build := range map[string]func(a *amlBuilder){
		"bad device name": func(a *amlBuilder) { a.device("bad!", func() {}) },
		"bad scope name":  func(a *amlBuilder) { a.scope(`\_SB.toolong`, func() {}) },
		"bad EISA ID":     func(a *amlBuilder) { a.name("_HID", func() { a.eisaID("XYZ") }) },
		"nested error":    func(a *amlBuilder) { a.scope(`\_SB`, func() { a.device("x", func() {}) }) },
		"huge package":    func(a *amlBuilder) { a.pkgOf(make([]uint64, 256)...) },
	} {
		var a amlBuilder
		build(&a)
		if _, err := a.bytes(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestResourceTemplate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(r *resourceTemplate)
		want  []byte
	}{
		{"COM1", func(r *resourceTemplate) {
			r.io(0x3F8, 1, 8)
			r.irqNoFlags(4)
		}, []byte{0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79, 0x0E}},
		{"WordBusNumber 0-0", func(r *resourceTemplate) {
			r.wordAddr(resTypeBus, 0, 0, 0)
		}, []byte{0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x79, 0xE3}},
		{"WordIO 0xD00-0xFFFF", func(r *resourceTemplate) {
			r.wordAddr(resTypeIO, ioRangeEntire, 0x0D00, 0xFFFF)
		}, []byte{0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0, 0, 0x00, 0x0D, 0xFF, 0xFF, 0, 0, 0x00, 0xF3, 0x79, 0xE4}},
		{"DWordMemory", func(r *resourceTemplate) {
			r.dwordMemory(memTypeFlagsMMIO, 0xC0000000, 0xFEBFFFFF)
		}, []byte{0x87, 0x17, 0x00, 0x00, 0x0C, 0x01,
			0, 0, 0, 0, 0x00, 0x00, 0x00, 0xC0, 0xFF, 0xFF, 0xBF, 0xFE, 0, 0, 0, 0, 0x00, 0x00, 0xC0, 0x3E,
			0x79, 0x63}},
		{"QWordMemory", func(r *resourceTemplate) {
			r.qwordMemory(memTypeFlagsMMIO64, 1<<40, 1<<40+1<<36-1)
		}, []byte{0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x03,
			0, 0, 0, 0, 0, 0, 0, 0,
			0, 0, 0, 0, 0, 0x01, 0, 0,
			0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01, 0, 0,
			0, 0, 0, 0, 0, 0, 0, 0,
			0, 0, 0, 0, 0x10, 0, 0, 0,
			0x79, 0xA6}},
	} {
		var r resourceTemplate
		tc.build(&r)
		got := r.end()
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s:\n got % X\nwant % X", tc.name, got, tc.want)
		}
		if checksum(got) != 0 {
			t.Errorf("%s: template sums to %#x", tc.name, checksum(got))
		}
	}
}
