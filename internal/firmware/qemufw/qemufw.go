// Package qemufw fills a fw_cfg device with the items QEMU gives x86
// firmware (SeaBIOS, OVMF): the memory map, the vCPU count, the boot order,
// the serial console, the SMBIOS tables and govisor's ACPI tables through
// the table loader.
//
// Items and their formats: QEMU's hw/i386/fw_cfg.c, hw/i386/pc.c (e820,
// "etc/e820" of struct e820_entry), hw/nvram/fw_cfg.c (bootorder),
// hw/acpi/bios-linker-loader.c (etc/table-loader), and SeaBIOS's
// src/fw/paravirt.c, which reads them.
package qemufw

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/govisor/govisor/internal/firmware/fwcfg"
	"github.com/govisor/govisor/internal/firmware/smbios"
	"github.com/govisor/govisor/internal/firmware/tableloader"
	"github.com/govisor/govisor/internal/x86/acpi"
)

// fw_cfg file names of the ACPI tables (QEMU's ACPI_BUILD_*_FILE).
const (
	FileTableLoader = "etc/table-loader"
	FileACPITables  = "etc/acpi/tables"
	FileRSDP        = "etc/acpi/rsdp"
	FileE820        = "etc/e820"
	FileBootOrder   = "bootorder"
	FileSerconPort  = "etc/sercon-port"
)

// E820 entry types (ACPI 6.5 section 15, "System Address Map Interfaces").
const (
	E820RAM      = 1
	E820Reserved = 2
)

// MemRange is one entry of the memory map.
type MemRange struct {
	Start, Size uint64
	Type        uint32
}

// Config is what the firmware is told about the machine.
type Config struct {
	CPUs int
	// RAM is the guest's memory map as firmware should see it: QEMU lists
	// the RAM ranges only, and firmware adds its own reservations.
	RAM []MemRange
	// BootOrder lists boot devices as Open Firmware paths, first tried
	// first, e.g. "/pci@i0cf8/*@1" for the PCI function in slot 1.
	BootOrder []string
	// SerialPort is the I/O port of the UART the firmware mirrors its
	// console to (SeaBIOS "sercon"); 0 for none.
	SerialPort uint16
	// ACPI describes the tables to install.
	ACPI acpi.Config
	// UUID is the machine's (RFC 4122 byte order; zero for none), given
	// as FW_CFG_UUID and in the SMBIOS system information.
	UUID [16]byte
}

// PCIPath is the Open Firmware path SeaBIOS gives the function in slot of
// PCI bus 0 (SeaBIOS src/boot.c build_pci_path: "/pci@i0cf8" then
// "*@slot" for a device it does not name).
func PCIPath(slot int) string { return fmt.Sprintf("/pci@i0cf8/*@%x", slot) }

// Fill adds the items of cfg to dev.
func Fill(dev *fwcfg.Device, cfg Config) error {
	add := func(key uint16, b []byte) error {
		if err := dev.Add(key, b); err != nil {
			return fmt.Errorf("qemufw: %w", err)
		}
		return nil
	}
	file := func(name string, b []byte) error {
		if err := dev.AddFile(name, b); err != nil {
			return fmt.Errorf("qemufw: %w", err)
		}
		return nil
	}
	le16 := func(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
	var ramBelow4G uint64
	e820 := make([]byte, 0, 20*len(cfg.RAM))
	for _, r := range cfg.RAM {
		// struct e820_entry: u64 address, u64 length, u32 type (packed, little-endian).
		e820 = binary.LittleEndian.AppendUint64(e820, r.Start)
		e820 = binary.LittleEndian.AppendUint64(e820, r.Size)
		e820 = binary.LittleEndian.AppendUint32(e820, r.Type)
		if r.Type == E820RAM && r.Start < 1<<32 {
			ramBelow4G = max(ramBelow4G, r.Start+r.Size)
		}
	}
	if err := add(fwcfg.KeyRAMSize, binary.LittleEndian.AppendUint64(nil, ramBelow4G)); err != nil {
		return err
	}
	if err := add(fwcfg.KeyNBCPUs, le16(cfg.CPUs)); err != nil {
		return err
	}
	if err := add(fwcfg.KeyMaxCPUs, le16(cfg.CPUs)); err != nil {
		return err
	}
	// No interactive boot menu: SeaBIOS would wait for a key otherwise.
	if err := add(fwcfg.KeyBootMenu, le16(0)); err != nil {
		return err
	}
	if err := file(FileE820, e820); err != nil {
		return err
	}
	if len(cfg.BootOrder) > 0 {
		// One path a line, NUL-terminated (hw/nvram/fw_cfg.c get_boot_devices_list).
		if err := file(FileBootOrder, []byte(strings.Join(cfg.BootOrder, "\n")+"\x00")); err != nil {
			return err
		}
	}
	if cfg.SerialPort != 0 {
		if err := file(FileSerconPort, le16(int(cfg.SerialPort))); err != nil {
			return err
		}
	}
	if err := add(fwcfg.KeyUUID, cfg.UUID[:]); err != nil {
		return err
	}
	if err := addSMBIOS(file, cfg); err != nil {
		return err
	}
	return addACPI(dev, cfg.ACPI)
}

// addSMBIOS adds the SMBIOS tables (package smbios) for cfg's machine.
func addSMBIOS(file func(string, []byte) error, cfg Config) error {
	var ram []smbios.MemRange
	for _, r := range cfg.RAM {
		if r.Type == E820RAM {
			ram = append(ram, smbios.MemRange{Start: r.Start, Size: r.Size})
		}
	}
	t, err := smbios.Build(smbios.Config{UUID: cfg.UUID, CPUs: cfg.CPUs, RAM: ram})
	if err != nil {
		return fmt.Errorf("qemufw: %w", err)
	}
	if err := file(smbios.FileTables, t.Structures); err != nil {
		return err
	}
	return file(smbios.FileAnchor, t.Anchor)
}

// addACPI adds the tables, the RSDP and the loader commands that place the
// tables anywhere in high memory and the RSDP in the F segment, as QEMU's
// acpi_build does.
func addACPI(dev *fwcfg.Device, cfg acpi.Config) error {
	r, err := acpi.BuildRelocatable(cfg)
	if err != nil {
		return fmt.Errorf("qemufw: %w", err)
	}
	l := tableloader.New()
	steps := []func() error{
		// 64-byte alignment keeps the FACS on the boundary it needs (5.2.10).
		func() error { return l.Allocate(FileACPITables, uint32(len(r.Tables)), 64, tableloader.ZoneHigh) },
		func() error { return l.Allocate(FileRSDP, uint32(len(r.RSDP)), 16, tableloader.ZoneFSeg) },
	}
	for _, p := range r.TablePointers {
		steps = append(steps, func() error { return l.AddPointer(FileACPITables, FileACPITables, p.Offset, p.Size) })
	}
	for _, c := range r.TableSums {
		steps = append(steps, func() error { return l.AddChecksum(FileACPITables, c.Offset, c.Start, c.Length) })
	}
	for _, p := range r.RSDPPointers {
		steps = append(steps, func() error { return l.AddPointer(FileRSDP, FileACPITables, p.Offset, p.Size) })
	}
	for _, c := range r.RSDPSums {
		steps = append(steps, func() error { return l.AddChecksum(FileRSDP, c.Offset, c.Start, c.Length) })
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return fmt.Errorf("qemufw: ACPI table loader: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{FileACPITables, r.Tables}, {FileRSDP, r.RSDP}, {FileTableLoader, l.Bytes()}} {
		if err := dev.AddFile(f.name, f.b); err != nil {
			return fmt.Errorf("qemufw: %w", err)
		}
	}
	return nil
}
