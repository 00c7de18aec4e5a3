package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// memory is guest memory for tests: a byte slice at guest-physical 0.
type memory []byte

func (m memory) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("write %d bytes at %#x out of range", len(p), off)
	}
	return copy(m[off:], p), nil
}

// tableSet is what an OS finds by following the pointers.
type tableSet struct {
	rsdpAddr uint64
	tables   map[string][]byte // by signature: XSDT, RSDT, FACP, APIC, DSDT
	facs     []byte
}

var le = binary.LittleEndian

// table reads and checks the SDT at addr: bounds, length, checksum.
func table(mem []byte, addr uint64) ([]byte, error) {
	if addr < Base || addr+headerSize > Limit {
		return nil, fmt.Errorf("table at %#x outside the BIOS area", addr)
	}
	n := uint64(le.Uint32(mem[addr+4:]))
	if n < headerSize || addr+n > Limit {
		return nil, fmt.Errorf("table %q at %#x: bad length %d", mem[addr:addr+4], addr, n)
	}
	t := mem[addr : addr+n]
	if s := checksum(t); s != 0 {
		return nil, fmt.Errorf("table %q: checksum off by %#x", t[:4], s)
	}
	if string(t[10:16]) != oemID {
		return nil, fmt.Errorf("table %q: OEM ID %q", t[:4], t[10:16])
	}
	return t, nil
}

// parseTables finds the RSDP by scanning the BIOS area as an OS does and
// follows RSDP -> XSDT (and RSDT) -> FADT -> DSDT/FACS, and XSDT -> MADT.
func parseTables(mem []byte) (*tableSet, error) {
	ts := &tableSet{tables: map[string][]byte{}}
	for a := uint64(Base); a < Limit; a += 16 {
		if string(mem[a:a+8]) == "RSD PTR " {
			ts.rsdpAddr = a
			break
		}
	}
	if ts.rsdpAddr == 0 {
		return nil, errors.New("no RSDP")
	}
	r := mem[ts.rsdpAddr : ts.rsdpAddr+rsdpSize]
	if checksum(r[:20]) != 0 || checksum(r) != 0 {
		return nil, errors.New("RSDP checksum")
	}
	if r[15] != 2 || le.Uint32(r[20:]) != rsdpSize {
		return nil, fmt.Errorf("RSDP revision %d length %d", r[15], le.Uint32(r[20:]))
	}
	xsdt, err := table(mem, le.Uint64(r[24:]))
	if err != nil {
		return nil, err
	}
	rsdt, err := table(mem, uint64(le.Uint32(r[16:])))
	if err != nil {
		return nil, err
	}
	ts.tables[string(xsdt[:4])], ts.tables[string(rsdt[:4])] = xsdt, rsdt
	if string(xsdt[:4]) != "XSDT" || string(rsdt[:4]) != "RSDT" {
		return nil, fmt.Errorf("root tables %q %q", xsdt[:4], rsdt[:4])
	}
	ptrs := xsdt[headerSize:]
	if len(ptrs)%8 != 0 || len(rsdt[headerSize:]) != len(ptrs)/2 {
		return nil, errors.New("XSDT/RSDT entry counts differ")
	}
	for i := 0; i < len(ptrs); i += 8 {
		addr := le.Uint64(ptrs[i:])
		if uint64(le.Uint32(rsdt[headerSize+i/2:])) != addr {
			return nil, fmt.Errorf("RSDT entry %d differs from XSDT", i/8)
		}
		t, err := table(mem, addr)
		if err != nil {
			return nil, err
		}
		ts.tables[string(t[:4])] = t
	}
	fadt := ts.tables["FACP"]
	if fadt == nil {
		return nil, errors.New("no FADT")
	}
	dsdtAddr := le.Uint64(fadt[fadtXDSDT:])
	if uint64(le.Uint32(fadt[fadtDSDT:])) != dsdtAddr {
		return nil, errors.New("DSDT and X_DSDT differ")
	}
	dsdt, err := table(mem, dsdtAddr)
	if err != nil {
		return nil, err
	}
	ts.tables["DSDT"] = dsdt
	facs := uint64(le.Uint32(fadt[fadtFirmwareCtrl:]))
	if facs%64 != 0 || facs < Base || facs+facsSize > Limit {
		return nil, fmt.Errorf("FACS at %#x", facs)
	}
	ts.facs = mem[facs : facs+facsSize]
	if string(ts.facs[:4]) != "FACS" || le.Uint32(ts.facs[4:]) != facsSize {
		return nil, errors.New("bad FACS")
	}
	return ts, nil
}

// madtEntries returns the MADT's interrupt controller structures by type.
func madtEntries(madt []byte) (map[byte][][]byte, error) {
	out := map[byte][][]byte{}
	for off := headerSize + 8; off < len(madt); {
		if off+2 > len(madt) || madt[off+1] < 2 || off+int(madt[off+1]) > len(madt) {
			return nil, fmt.Errorf("MADT entry at %d truncated", off)
		}
		e := madt[off : off+int(madt[off+1])]
		out[e[0]] = append(out[e[0]], e)
		off += len(e)
	}
	return out, nil
}

func TestWrite(t *testing.T) {
	for _, n := range []int{1, 2, 4, 64, MaxCPUs} {
		for _, mmio64 := range []uint64{0, 1 << 36} {
			t.Run(fmt.Sprintf("cpus=%d/mmio64=%#x", n, mmio64), func(t *testing.T) {
				cfg := DefaultConfig(n)
				cfg.PCIMMIO64Start, cfg.PCIMMIO64Size = 1<<40, mmio64
				mem := make(memory, Limit)
				rsdp, err := Write(mem, cfg)
				if err != nil {
					t.Fatal(err)
				}
				ts, err := parseTables(mem)
				if err != nil {
					t.Fatal(err)
				}
				if ts.rsdpAddr != rsdp {
					t.Errorf("RSDP found at %#x, Write said %#x", ts.rsdpAddr, rsdp)
				}
				for _, sig := range []string{"XSDT", "RSDT", "FACP", "APIC", "DSDT"} {
					if ts.tables[sig] == nil {
						t.Errorf("no %s", sig)
					}
				}
				checkFADT(t, ts.tables["FACP"])
				checkMADT(t, ts.tables["APIC"], n)
				checkDSDT(t, ts.tables["DSDT"], cfg)
			})
		}
	}
}

func checkFADT(t *testing.T, f []byte) {
	t.Helper()
	if f[8] != 6 || len(f) != fadtSize {
		t.Errorf("FADT revision %d length %d", f[8], len(f))
	}
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"SCI_INT", uint64(le.Uint16(f[fadtSCIInt:])), SCIIRQ},
		{"SMI_CMD", uint64(le.Uint32(f[fadtSMICmd:])), 0},
		{"PM1a_EVT_BLK", uint64(le.Uint32(f[fadtPM1aEvtBlk:])), 0x600},
		{"PM1a_CNT_BLK", uint64(le.Uint32(f[fadtPM1aCntBlk:])), 0x604},
		{"PM_TMR_BLK", uint64(le.Uint32(f[fadtPMTmrBlk:])), 0x608},
		{"PM1_EVT_LEN", uint64(f[fadtPM1EvtLen]), 4},
		{"PM1_CNT_LEN", uint64(f[fadtPM1CntLen]), 2},
		{"PM_TMR_LEN", uint64(f[fadtPMTmrLen]), 4},
		{"X_PM1a_EVT_BLK", le.Uint64(f[fadtXPM1aEvtBlk+4:]), 0x600},
		{"X_PM1a_EVT_BLK width", uint64(f[fadtXPM1aEvtBlk+1]), 32},
		{"X_PM1a_CNT_BLK", le.Uint64(f[fadtXPM1aCntBlk+4:]), 0x604},
		{"X_PM1a_CNT_BLK width", uint64(f[fadtXPM1aCntBlk+1]), 16},
		{"X_PM_TMR_BLK", le.Uint64(f[fadtXPMTmrBlk+4:]), 0x608},
		{"X_PM_TMR_BLK space", uint64(f[fadtXPMTmrBlk]), gasSystemIO},
		{"RESET_REG space", uint64(f[fadtResetReg]), gasSystemIO},
		{"RESET_REG", le.Uint64(f[fadtResetReg+4:]), 0xCF9},
		{"RESET_VALUE", uint64(f[fadtResetValue]), 6},
		{"CENTURY", uint64(f[fadtCentury]), 0x32},
		{"IAPC_BOOT_ARCH 8042|VGA-absent", uint64(le.Uint16(f[fadtIAPCBootArch:]) & 6), 6},
		{"RESET_REG_SUP", uint64(le.Uint32(f[fadtFlags:]) & fadtFlagResetRegSup), fadtFlagResetRegSup},
		{"HW_REDUCED_ACPI", uint64(le.Uint32(f[fadtFlags:]) & (1 << 20)), 0},
	} {
		if c.got != c.want {
			t.Errorf("FADT %s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func checkMADT(t *testing.T, m []byte, n int) {
	t.Helper()
	if le.Uint32(m[36:]) != LAPICAddr || le.Uint32(m[40:])&madtFlagPCATCompat == 0 {
		t.Errorf("MADT LAPIC address %#x flags %#x", le.Uint32(m[36:]), le.Uint32(m[40:]))
	}
	es, err := madtEntries(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(es[madtLocalAPIC]) != n {
		t.Fatalf("%d local APIC entries, want %d", len(es[madtLocalAPIC]), n)
	}
	for i, e := range es[madtLocalAPIC] {
		if e[2] != byte(i) || e[3] != byte(i) || le.Uint32(e[4:])&madtLAPICEnabled == 0 {
			t.Errorf("local APIC entry %d: % X", i, e)
		}
	}
	if len(es[madtIOAPIC]) != 1 {
		t.Fatalf("%d I/O APIC entries", len(es[madtIOAPIC]))
	}
	io := es[madtIOAPIC][0]
	if io[2] != byte(n) || le.Uint32(io[4:]) != IOAPICAddr || le.Uint32(io[8:]) != 0 {
		t.Errorf("I/O APIC entry % X", io)
	}
	overrides := map[byte][2]uint32{}
	for _, e := range es[madtIntSrcOverride] {
		overrides[e[3]] = [2]uint32{le.Uint32(e[4:]), uint32(le.Uint16(e[8:]))}
	}
	want := map[byte][2]uint32{0: {2, 0}, 9: {9, 0xD}}
	if fmt.Sprint(overrides) != fmt.Sprint(want) {
		t.Errorf("interrupt source overrides %v, want %v", overrides, want)
	}
	if nmi := es[madtLocalAPICNMI]; len(nmi) != 1 || nmi[0][2] != 0xFF || nmi[0][5] != 1 {
		t.Errorf("local APIC NMI entries % X", nmi)
	}
	if len(es) != 4 {
		t.Errorf("MADT entry types %d, want 4", len(es))
	}
}

func checkDSDT(t *testing.T, d []byte, cfg Config) {
	t.Helper()
	s5 := []byte{0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00}
	for _, want := range []struct {
		what string
		b    []byte
	}{
		{"_S5_ package", s5},
		{"PNP0A03", []byte{'_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x0A, 0x03}},
		{"PNP0501", []byte{'_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x05, 0x01}},
		{"COM1 IO", []byte{0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00}},
	} {
		if !bytes.Contains(d, want.b) {
			t.Errorf("DSDT lacks the %s bytes", want.what)
		}
	}
	qword := []byte{0x8A, 0x2B, 0x00}
	if got := bytes.Contains(d, qword); got != (cfg.PCIMMIO64Size != 0) {
		t.Errorf("DSDT has a QWordMemory descriptor: %v, 64-bit window size %#x", got, cfg.PCIMMIO64Size)
	}
}

func TestWriteErrors(t *testing.T) {
	good := DefaultConfig(2)
	for _, tc := range []struct {
		name string
		cfg  func(c *Config)
		want error
	}{
		{"no CPUs", func(c *Config) { c.NCPUs = 0 }, ErrTooManyCPUs},
		{"too many CPUs", func(c *Config) { c.NCPUs = MaxCPUs + 1 }, ErrTooManyCPUs},
		{"inverted 32-bit window", func(c *Config) { c.PCIMMIO32Start = 0xE0000000; c.PCIMMIO32End = 0xD0000000 }, ErrBadWindow},
		{"32-bit window over the I/O APIC", func(c *Config) { c.PCIMMIO32End = 0xFEC00000 }, ErrBadWindow},
		{"64-bit window below 4 GiB", func(c *Config) { c.PCIMMIO64Start = 0x80000000; c.PCIMMIO64Size = 1 << 20 }, ErrBadWindow},
		{"64-bit window wraps", func(c *Config) { c.PCIMMIO64Start = ^uint64(0) - 10; c.PCIMMIO64Size = 1 << 20 }, ErrBadWindow},
	} {
		cfg := good
		tc.cfg(&cfg)
		mem := make(memory, Limit)
		if _, err := Write(mem, cfg); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if !bytes.Equal(mem, make(memory, Limit)) {
			t.Errorf("%s: failed Write changed memory", tc.name)
		}
	}
	if _, err := Write(make(memory, Base+16), good); err == nil {
		t.Error("Write into too little memory succeeded")
	}
}

func FuzzWrite(f *testing.F) {
	f.Add(1, uint64(0xC0000000), uint64(0xFEBFFFFF), uint64(0), uint64(0))
	f.Add(64, uint64(0xC0000000), uint64(0xFEBFFFFF), uint64(1<<40), uint64(1<<38))
	f.Add(255, uint64(0), uint64(0), uint64(1), uint64(1))
	mem := make(memory, Limit)
	f.Fuzz(func(t *testing.T, n int, s32, e32, s64, n64 uint64) {
		clear(mem)
		cfg := Config{NCPUs: n, PCIMMIO32Start: s32, PCIMMIO32End: e32, PCIMMIO64Start: s64, PCIMMIO64Size: n64}
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
		checkMADT(t, ts.tables["APIC"], n)
		checkDSDT(t, ts.tables["DSDT"], cfg)
	})
}

// TestIASL disassembles the tables with ACPICA's iasl, which checks the
// AML grammar and every table's layout independently of this package.
func TestIASL(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not installed (apt-get install acpica-tools)")
	}
	cfg := DefaultConfig(4)
	cfg.PCIMMIO64Start, cfg.PCIMMIO64Size = 1<<40, 1<<36
	cfg.HotplugSlots = 1<<5 | 1<<31
	mem := make(memory, Limit)
	if _, err := Write(mem, cfg); err != nil {
		t.Fatal(err)
	}
	ts, err := parseTables(mem)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		sig, file string
		want      []string
	}{
		{"DSDT", "dsdt.aml", []string{"_S5_", "PNP0A03", "PNP0501", "QWordMemory", "DWordMemory", "WordBusNumber", "IRQNoFlags",
			"OperationRegion (PCST, SystemIO, 0x0630, 0x0C)", "Field (PCST, DWordAcc, NoLock, WriteAsZeros)",
			"PCIU, 32, PCID, 32, B0EJ, 32", "Device (S05)", "Name (_ADR, 0x00050000)", "Name (_SUN, 0x05)",
			"Method (_EJ0, 1, NotSerialized)", "B0EJ = 0x20", "Device (S1F)", "B0EJ = 0x80000000",
			"Method (PCNT, 0, NotSerialized)", "Local0 = PCIU", "Local1 = PCID",
			"If ((Local0 & 0x20)) { Notify (S05, One)", "If ((Local1 & 0x80000000)) { Notify (S1F, 0x03)",
			"Scope (\\_GPE) { Method (_E01, 0, NotSerialized)", "\\_SB.PCI0.PCNT ()"}},
		{"FACP", "facp.dat", []string{"0000000000000CF9", "PM1A Control Block Address : 00000604",
			"GPE0 Block Address : 00000620", "GPE0 Block Length : 04"}},
		{"APIC", "apic.dat", []string{"Interrupt Source Override", "I/O Apic ID : 04", "Local APIC NMI"}},
	} {
		bin := filepath.Join(dir, tc.file)
		if err := os.WriteFile(bin, ts.tables[tc.sig], 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(iasl, "-d", bin).CombinedOutput()
		if err != nil {
			t.Fatalf("iasl -d %s: %v\n%s", tc.sig, err, out)
		}
		if bytes.Contains(bytes.ToLower(out), []byte("error")) {
			t.Errorf("iasl -d %s reported errors:\n%s", tc.sig, out)
		}
		dsl, err := os.ReadFile(strings.TrimSuffix(bin, filepath.Ext(bin)) + ".dsl")
		if err != nil {
			t.Fatal(err)
		}
		// Collapse runs of spaces: iasl aligns field names in columns.
		text := strings.Join(strings.Fields(string(dsl)), " ")
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("iasl's %s disassembly lacks %q", tc.sig, w)
			}
		}
	}
}
