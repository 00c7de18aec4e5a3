package acpi

import (
	"bytes"
	"fmt"
	"testing"
)

// Expected bytes worked out by hand from ACPI 6.5 section 20.2.5.

func TestMethodObjects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(a *amlBuilder)
		want  []byte
	}{
		{"empty method", func(a *amlBuilder) {
			a.method("PCNT", 0, func() {})
		}, []byte{0x14, 0x06, 'P', 'C', 'N', 'T', 0x00}},
		{"_EJ0 storing to a field", func(a *amlBuilder) {
			a.method("_EJ0", 1, func() {
				a.store(func() { a.integer(0x20) }, func() { a.nameString("B0EJ") })
			})
		}, []byte{0x14, 0x0D, '_', 'E', 'J', '0', 0x01, 0x70, 0x0A, 0x20, 'B', '0', 'E', 'J'}},
		{"operation region", func(a *amlBuilder) {
			a.opRegionIO("PCST", 0x630, 12)
		}, []byte{0x5B, 0x80, 'P', 'C', 'S', 'T', 0x01, 0x0B, 0x30, 0x06, 0x0A, 0x0C}},
		{"field", func(a *amlBuilder) {
			a.fieldDWordAcc("PCST", []fieldUnit{{"PCIU", 32}, {"B0EJ", 64}})
		}, []byte{0x5B, 0x81, 0x11, 'P', 'C', 'S', 'T', 0x43,
			'P', 'C', 'I', 'U', 0x20, 'B', '0', 'E', 'J', 0x40, 0x04}},
		{"if and notify", func(a *amlBuilder) {
			a.ifAnd(func() { a.local(1) }, 0x20, func() { a.notify("S05", notifyEjectRequest) })
		}, []byte{0xA0, 0x0D, 0x7B, 0x61, 0x0A, 0x20, 0x00, 0x86, 'S', '0', '5', '_', 0x0A, 0x03}},
		{"store a field to a local", func(a *amlBuilder) {
			a.store(func() { a.nameString("PCIU") }, func() { a.local(0) })
		}, []byte{0x70, 'P', 'C', 'I', 'U', 0x60}},
		{"call by path", func(a *amlBuilder) {
			a.call(`\_SB.PCI0.PCNT`)
		}, []byte{'\\', 0x2F, 0x03, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'P', 'C', 'N', 'T'}},
	} {
		var a amlBuilder
		tc.build(&a)
		if got, err := a.bytes(); err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s:\n got % X, %v\nwant % X", tc.name, got, err, tc.want)
		}
	}
}

func TestMethodObjectErrors(t *testing.T) {
	for name, build := range map[string]func(a *amlBuilder){
		"8 arguments":       func(a *amlBuilder) { a.method("ABCD", 8, func() {}) },
		"bad method name":   func(a *amlBuilder) { a.method("abcd", 0, func() {}) },
		"Local8":            func(a *amlBuilder) { a.local(8) },
		"odd field width":   func(a *amlBuilder) { a.fieldDWordAcc("PCST", []fieldUnit{{"PCIU", 8}}) },
		"bad field name":    func(a *amlBuilder) { a.fieldDWordAcc("PCST", []fieldUnit{{"toolong", 32}}) },
		"bad notify target": func(a *amlBuilder) { a.notify("s05", 1) },
	} {
		var a amlBuilder
		build(&a)
		if _, err := a.bytes(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRawPkgLength(t *testing.T) {
	for _, tc := range []struct {
		v    uint32
		want []byte
	}{
		{32, []byte{0x20}},
		{63, []byte{0x3F}},
		{64, []byte{0x40, 0x04}},
		{4095, []byte{0x4F, 0xFF}},
		{4096, []byte{0x80, 0x00, 0x01}},
	} {
		if got := rawPkgLength(tc.v); !bytes.Equal(got, tc.want) {
			t.Errorf("rawPkgLength(%d) = % X, want % X", tc.v, got, tc.want)
		}
	}
}

// checkHotplug checks the hotplug parts of the FADT and DSDT for slots.
func checkHotplug(t *testing.T, fadt, dsdt []byte, slots uint32) {
	t.Helper()
	gpe := le.Uint32(fadt[fadtGPE0Blk:])
	xgpe := le.Uint64(fadt[fadtXGPE0Blk+4:])
	if slots == 0 {
		if gpe != 0 || fadt[fadtGPE0BlkLen] != 0 || xgpe != 0 {
			t.Errorf("no hotplug, but GPE0_BLK %#x len %d", gpe, fadt[fadtGPE0BlkLen])
		}
		if bytes.Contains(dsdt, []byte("PCNT")) || bytes.Contains(dsdt, []byte("_GPE")) {
			t.Error("no hotplug, but the DSDT has hotplug objects")
		}
		return
	}
	if gpe != GPE0Block || fadt[fadtGPE0BlkLen] != GPE0BlockLen || xgpe != GPE0Block || fadt[fadtXGPE0Blk] != gasSystemIO {
		t.Errorf("GPE0_BLK %#x len %d X_GPE0_BLK %#x", gpe, fadt[fadtGPE0BlkLen], xgpe)
	}
	for n := 0; n < 32; n++ {
		adr := []byte{0x08, '_', 'A', 'D', 'R', 0x0C, 0, 0, byte(n), 0}
		has := bytes.Contains(dsdt, adr) && bytes.Contains(dsdt, []byte(slotName(n)))
		if want := slots&(1<<n) != 0; has != want {
			t.Errorf("slot %d: device object present %v, want %v", n, has, want)
		}
	}
	for _, w := range []string{"_E01", "PCNT", "PCIU", "PCID", "B0EJ", "_EJ0"} {
		if !bytes.Contains(dsdt, []byte(w)) {
			t.Errorf("DSDT lacks %s", w)
		}
	}
}

func TestWriteHotplug(t *testing.T) {
	for _, slots := range []uint32{0, 1 << 4, 0xFFFFFFFE, 0xF0F0F0F0} {
		t.Run(fmt.Sprintf("slots=%#x", slots), func(t *testing.T) {
			cfg := DefaultConfig(2)
			cfg.HotplugSlots = slots
			mem := make(memory, Limit)
			if _, err := Write(mem, cfg); err != nil {
				t.Fatal(err)
			}
			ts, err := parseTables(mem)
			if err != nil {
				t.Fatal(err)
			}
			checkFADT(t, ts.tables["FACP"])
			checkDSDT(t, ts.tables["DSDT"], cfg)
			checkHotplug(t, ts.tables["FACP"], ts.tables["DSDT"], slots)
		})
	}
	cfg := DefaultConfig(2)
	cfg.HotplugSlots = 1
	if _, err := Write(make(memory, Limit), cfg); err == nil {
		t.Error("slot 0 accepted as hot-pluggable")
	}
}

func FuzzHotplugTables(f *testing.F) {
	f.Add(uint32(0), 1)
	f.Add(uint32(0xFFFFFFFE), 4)
	f.Add(uint32(0x80000002), 254)
	mem := make(memory, Limit)
	f.Fuzz(func(t *testing.T, slots uint32, n int) {
		clear(mem)
		cfg := DefaultConfig(n)
		cfg.HotplugSlots = slots
		if _, err := Write(mem, cfg); err != nil {
			if cfg.validate() == nil {
				t.Fatalf("valid config %+v failed: %v", cfg, err)
			}
			return
		}
		ts, err := parseTables(mem)
		if err != nil {
			t.Fatal(err)
		}
		checkHotplug(t, ts.tables["FACP"], ts.tables["DSDT"], slots)
	})
}
