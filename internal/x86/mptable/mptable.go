// Package mptable writes the Intel MultiProcessor Specification 1.4 tables
// (floating pointer structure and MP configuration table) that tell a guest
// without ACPI (or booted with acpi=off) its CPUs, buses, I/O APIC and the
// routing of the legacy ISA interrupts.
package mptable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Machine facts fixed by the VMM.
const (
	// Addr is the guest-physical address of the floating pointer structure:
	// the start of the EBDA, inside the "last KiB of base memory" (0x9FC00)
	// that every MP-aware OS scans (MP spec 1.4 section 4). The
	// configuration table follows it directly.
	Addr = 0x9FC00
	// Limit is the first guest-physical address the tables must not reach:
	// the ACPI/BIOS area begins there.
	Limit = 0xE0000
	// LAPICAddr is the physical address of every CPU's local APIC.
	LAPICAddr = 0xFEE00000
	// IOAPICAddr is the physical address of the single I/O APIC.
	IOAPICAddr = 0xFEC00000
	// IOAPICPins is the number of redirection entries of the I/O APIC.
	IOAPICPins = 24
	// IOAPICVersion is the version register value of KVM's I/O APIC.
	IOAPICVersion = 0x11
	// LAPICVersion is the version register value of KVM's local APIC.
	LAPICVersion = 0x14
	// MaxCPUs is the largest vCPU count the tables can describe: APIC IDs
	// are 8 bits, 0xFF is the broadcast ID, and the I/O APIC takes ID nCPUs.
	MaxCPUs = 254
	// PCIBus and ISABus are the bus IDs of the two buses in the table.
	PCIBus = 0
	ISABus = 1
)

// ErrTooManyCPUs is returned for a vCPU count the tables cannot describe.
var ErrTooManyCPUs = errors.New("mptable: unsupported number of vCPUs")

// Entry sizes and type codes from MP spec 1.4 section 4.3, table 4-3.
const (
	floatSize     = 16
	headerSize    = 44
	processorSize = 20
	entrySize     = 8 // bus, I/O APIC, I/O interrupt and local interrupt entries

	typeProcessor = 0
	typeBus       = 1
	typeIOAPIC    = 2
	typeIOIntr    = 3
	typeLocalIntr = 4

	intTypeINT    = 0
	intTypeNMI    = 1
	intTypeExtINT = 3

	cpuEnabled = 1 << 0
	cpuBSP     = 1 << 1

	specRev = 4 // MP spec version 1.4
)

// CPU signature and feature flags reported in processor entries (MP spec
// 1.4 section 4.3.1): family 6, model 1, stepping 0, with the FPU (bit 0)
// and on-chip APIC (bit 9) feature bits. Linux reads only the APIC ID and
// flags of these entries; the values just have to look like a P6-class CPU.
const (
	cpuSignature    = 6<<8 | 1<<4
	cpuFeatureFlags = 1<<0 | 1<<9
)

// ioIntrCount is the number of I/O interrupt entries: ISA IRQs 0-15
// without IRQ 2 (the cascade). There is no ExtINT entry for pin 0: the
// I/O APIC starts with every pin masked, and Linux warns about an ExtINT
// the table reports but the hardware has not set up.
const ioIntrCount = 15

// Size returns the number of bytes Write stores for nCPUs vCPUs: the
// floating pointer plus the configuration table.
func Size(nCPUs int) int {
	return floatSize + headerSize + nCPUs*processorSize + entrySize*(2+1+ioIntrCount+2)
}

// Write stores the floating pointer at Addr and the configuration table
// right after it, describing nCPUs vCPUs with APIC IDs 0..nCPUs-1 (CPU 0 the
// bootstrap processor) and one I/O APIC with ID nCPUs.
//
// For 64 vCPUs the tables are about 1.5 KiB, more than the 1 KiB between
// Addr and 0xA0000, so they continue into the (otherwise unused, no VGA)
// legacy hole; guest memory must back [Addr, Addr+Size) and the e820 map
// should end RAM at Addr.
func Write(mem io.WriterAt, nCPUs int) error {
	buf, err := build(nCPUs)
	if err != nil {
		return err
	}
	if _, err := mem.WriteAt(buf, Addr); err != nil {
		return fmt.Errorf("mptable: write %d bytes at %#x: %w", len(buf), Addr, err)
	}
	return nil
}

// build returns the floating pointer followed by the configuration table,
// laid out for guest-physical address Addr.
func build(nCPUs int) ([]byte, error) {
	if nCPUs < 1 || nCPUs > MaxCPUs {
		return nil, fmt.Errorf("%w: %d (want 1..%d)", ErrTooManyCPUs, nCPUs, MaxCPUs)
	}
	size := Size(nCPUs)
	if Addr+size > Limit {
		return nil, fmt.Errorf("%w: %d vCPUs need %d bytes at %#x, past %#x", ErrTooManyCPUs, nCPUs, size, Addr, Limit)
	}
	b := make([]byte, size)
	le := binary.LittleEndian
	ioapicID := byte(nCPUs)

	// Configuration table entries (MP spec 1.4 section 4.3), in the order
	// the spec recommends: processors, buses, I/O APICs, I/O interrupts,
	// local interrupts.
	off := floatSize + headerSize
	for i := 0; i < nCPUs; i++ {
		e := b[off : off+processorSize]
		e[0] = typeProcessor
		e[1] = byte(i) // local APIC ID
		e[2] = LAPICVersion
		e[3] = cpuEnabled
		if i == 0 {
			e[3] |= cpuBSP
		}
		le.PutUint32(e[4:], cpuSignature)
		le.PutUint32(e[8:], cpuFeatureFlags)
		off += processorSize
	}
	for _, bus := range []struct {
		id   byte
		name string
	}{{PCIBus, "PCI   "}, {ISABus, "ISA   "}} {
		e := b[off : off+entrySize]
		e[0] = typeBus
		e[1] = bus.id
		copy(e[2:8], bus.name)
		off += entrySize
	}
	{
		e := b[off : off+entrySize]
		e[0] = typeIOAPIC
		e[1] = ioapicID
		e[2] = IOAPICVersion
		e[3] = 1 // enabled
		le.PutUint32(e[4:], IOAPICAddr)
		off += entrySize
	}
	// I/O interrupt entries (section 4.3.4). As on a PC (section 5.3,
	// default configurations) the timer's IRQ 0 is wired to pin 2; the
	// other ISA IRQs map to the pin of the same number. Flags 0: polarity and trigger
	// conform to the ISA bus (active high, edge).
	ioIntr := func(typ, irq, pin byte) {
		e := b[off : off+entrySize]
		e[0] = typeIOIntr
		e[1] = typ
		e[4] = ISABus
		e[5] = irq
		e[6] = ioapicID
		e[7] = pin
		off += entrySize
	}
	for irq := byte(0); irq < 16; irq++ {
		switch irq {
		case 0:
			ioIntr(intTypeINT, 0, 2)
		case 2: // cascade from the slave 8259, never an interrupt source
		default:
			ioIntr(intTypeINT, irq, irq)
		}
	}
	// Local interrupt entries (section 4.3.5): ExtINT on LINT0 and NMI on
	// LINT1 of every local APIC (destination ID 0xFF), the virtual wire
	// setup of section 3.6.2.2.
	for _, l := range []struct{ typ, lint byte }{{intTypeExtINT, 0}, {intTypeNMI, 1}} {
		e := b[off : off+entrySize]
		e[0] = typeLocalIntr
		e[1] = l.typ
		e[4] = ISABus
		e[5] = 0
		e[6] = 0xFF
		e[7] = l.lint
		off += entrySize
	}

	// Configuration table header (section 4.2, table 4-2).
	h := b[floatSize : floatSize+headerSize]
	copy(h[0:4], "PCMP")
	le.PutUint16(h[4:], uint16(size-floatSize)) // base table length
	h[6] = specRev
	copy(h[8:16], "GOVISOR ")
	copy(h[16:28], "GOVISOR VM  ")
	le.PutUint16(h[34:], uint16(nCPUs+2+1+ioIntrCount+2)) // entry count
	le.PutUint32(h[36:], LAPICAddr)
	h[7] = -sum(b[floatSize:]) // checksum over the base table

	// Floating pointer structure (section 4.1, table 4-1).
	f := b[:floatSize]
	copy(f[0:4], "_MP_")
	le.PutUint32(f[4:], Addr+floatSize) // configuration table address
	f[8] = 1                            // length in 16-byte paragraphs
	f[9] = specRev
	// Feature bytes 1-5 stay 0: a configuration table is present (not a
	// default configuration) and IMCR is absent, so the OS uses virtual
	// wire mode.
	f[10] = -sum(f)
	return b, nil
}

// sum returns the 8-bit sum of b.
func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}
