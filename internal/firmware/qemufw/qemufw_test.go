package qemufw

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/govisor/govisor/internal/firmware/fwcfg"
	"github.com/govisor/govisor/internal/firmware/smbios"
	"github.com/govisor/govisor/internal/firmware/tableloader"
	"github.com/govisor/govisor/internal/x86/acpi"
)

// readItem reads a whole item through the port interface, as firmware
// without DMA does: select (outw 0x510), then inb 0x511 n times.
func readItem(d *fwcfg.Device, key uint16, n int) []byte {
	d.Write(fwcfg.SelectorPort-fwcfg.Base, binary.LittleEndian.AppendUint16(nil, key))
	b := make([]byte, n)
	for i := range b {
		d.Read(fwcfg.DataPort-fwcfg.Base, b[i:i+1])
	}
	return b
}

// files reads the file directory ("File Directory" in fw_cfg.rst).
func files(d *fwcfg.Device) map[string][]byte {
	count := binary.BigEndian.Uint32(readItem(d, fwcfg.KeyFileDir, 4))
	dir := readItem(d, fwcfg.KeyFileDir, 4+64*int(count))[4:]
	out := map[string][]byte{}
	for i := 0; i < int(count); i++ {
		e := dir[64*i:]
		name := string(bytes.TrimRight(e[8:64], "\x00"))
		out[name] = readItem(d, binary.BigEndian.Uint16(e[4:]), int(binary.BigEndian.Uint32(e)))
	}
	return out
}

// runLoader executes a table-loader command file, placing each file at
// the address addrs gives. The two firmwares read ADD_CHECKSUM apart:
// SeaBIOS (romfile_loader.c) subtracts the range's sum from the checksum
// byte, OVMF (QemuFwCfgAcpi.c ProcessCmdAddChecksum) stores the sum's
// negation over it, counting the byte's old value in; ovmf picks the
// second.
func runLoader(t *testing.T, cmds []byte, fs map[string][]byte, addrs map[string]uint64, ovmf bool) {
	t.Helper()
	name := func(b []byte) string { return string(bytes.TrimRight(b[:tableloader.FileNameLen], "\x00")) }
	for len(cmds) >= tableloader.EntrySize {
		e := cmds[4:tableloader.EntrySize]
		switch binary.LittleEndian.Uint32(cmds) {
		case tableloader.CmdAllocate:
			if _, ok := fs[name(e)]; !ok {
				t.Fatalf("allocate of unknown file %q", name(e))
			}
		case tableloader.CmdAddPointer:
			dst, src := fs[name(e)], name(e[56:])
			off, size := binary.LittleEndian.Uint32(e[112:]), e[116]
			var v [8]byte
			copy(v[:], dst[off:off+uint32(size)])
			n := binary.LittleEndian.Uint64(v[:]) + addrs[src]
			binary.LittleEndian.PutUint64(v[:], n)
			copy(dst[off:off+uint32(size)], v[:size])
		case tableloader.CmdAddChecksum:
			f := fs[name(e)]
			off, start, length := binary.LittleEndian.Uint32(e[56:]), binary.LittleEndian.Uint32(e[60:]), binary.LittleEndian.Uint32(e[64:])
			var sum byte
			for _, b := range f[start : start+length] {
				sum += b
			}
			if ovmf {
				f[off] = -sum
			} else {
				f[off] -= sum
			}
		default:
			t.Fatalf("unknown command %d", binary.LittleEndian.Uint32(cmds))
		}
		cmds = cmds[tableloader.EntrySize:]
	}
}

// memory is a writer for acpi.Write's reference image.
type memory []byte

func (m memory) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

// TestACPIThroughLoader checks that the tables SeaBIOS and OVMF install
// from the loader, placed where acpi.Write puts them for a direct kernel
// boot, are byte for byte those tables.
func TestACPIThroughLoader(t *testing.T) {
	for _, c := range []struct {
		cpus int
		ovmf bool
	}{{1, false}, {4, false}, {1, true}, {4, true}} {
		cpus := c.cpus
		t.Run(fmt.Sprintf("%dcpus-ovmf=%v", cpus, c.ovmf), func(t *testing.T) {
			acfg := acpi.DefaultConfig(cpus)
			acfg.HotplugSlots = 0b1100
			d := fwcfg.New(nil)
			if err := Fill(d, Config{CPUs: cpus, ACPI: acfg, RAM: []MemRange{{0, 256 << 20, E820RAM}}}); err != nil {
				t.Fatal(err)
			}
			fs := files(d)
			tables := fs[FileACPITables]
			rsdp := fs[FileRSDP]
			runLoader(t, fs[FileTableLoader], fs, map[string]uint64{FileACPITables: acpi.Base, FileRSDP: acpi.Base}, c.ovmf)
			copy(tables, rsdp) // acpi.Write puts the RSDP first, where the blob has a blank
			want := make(memory, acpi.Limit)
			if _, err := acpi.Write(want, acfg); err != nil {
				t.Fatal(err)
			}
			if got := want[acpi.Base : acpi.Base+len(tables)]; !bytes.Equal(tables, got) {
				t.Fatalf("tables installed through the loader differ from acpi.Write's:\n%x\n%x", tables, got)
			}
		})
	}
}

func TestItems(t *testing.T) {
	d := fwcfg.New(nil)
	cfg := Config{
		CPUs:       2,
		RAM:        []MemRange{{0, 0xC0000000, E820RAM}, {1 << 32, 1 << 30, E820RAM}},
		BootOrder:  []string{PCIPath(1), PCIPath(10)},
		SerialPort: 0x3F8,
		ACPI:       acpi.DefaultConfig(2),
		UUID:       [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	}
	if err := Fill(d, cfg); err != nil {
		t.Fatal(err)
	}
	fs := files(d)
	// SMBIOS describes the RAM ranges of the e820 map.
	want, err := smbios.Build(smbios.Config{UUID: cfg.UUID, CPUs: 2,
		RAM: []smbios.MemRange{{Start: 0, Size: 0xC0000000}, {Start: 1 << 32, Size: 1 << 30}}})
	if err != nil {
		t.Fatal(err)
	}
	e820 := make([]byte, 0, 40)
	for _, r := range cfg.RAM {
		e820 = binary.LittleEndian.AppendUint64(e820, r.Start)
		e820 = binary.LittleEndian.AppendUint64(e820, r.Size)
		e820 = binary.LittleEndian.AppendUint32(e820, r.Type)
	}
	tests := []struct {
		name      string
		got, want []byte
	}{
		{"vCPUs", readItem(d, fwcfg.KeyNBCPUs, 2), []byte{2, 0}},
		{"max vCPUs", readItem(d, fwcfg.KeyMaxCPUs, 2), []byte{2, 0}},
		{"RAM below 4 GiB", readItem(d, fwcfg.KeyRAMSize, 8), []byte{0, 0, 0, 0xC0, 0, 0, 0, 0}},
		{"no boot menu", readItem(d, fwcfg.KeyBootMenu, 2), []byte{0, 0}},
		{"e820", fs[FileE820], e820},
		{"bootorder", fs[FileBootOrder], []byte("/pci@i0cf8/*@1\n/pci@i0cf8/*@a\x00")},
		{"sercon", fs[FileSerconPort], []byte{0xF8, 0x03}},
		{"UUID", readItem(d, fwcfg.KeyUUID, 16), cfg.UUID[:]},
		{"SMBIOS", fs[smbios.FileTables], want.Structures},
		{"SMBIOS anchor", fs[smbios.FileAnchor], want.Anchor},
	}
	for _, tc := range tests {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
