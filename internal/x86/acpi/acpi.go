// Package acpi writes the ACPI tables of govisor's x86-64 machine: RSDP,
// RSDT, XSDT, FADT with FACS, MADT and a DSDT in hand-assembled AML
// describing the PCI host bridge, COM1 and the S5 (soft-off) state, and,
// when the machine has them, hot-pluggable PCI slots with their GPE.
//
// Section numbers refer to the ACPI Specification 6.5 (August 2022).
package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Where the tables go: the legacy BIOS area, where an OS searches for the
// RSDP on 16-byte boundaries (section 5.2.5.1).
const (
	// Base is the lowest guest-physical address Write uses.
	Base = 0xE0000
	// Limit is the first guest-physical address past the area Write may use.
	Limit = 0x100000
)

// Machine facts fixed by the VMM.
const (
	// LAPICAddr is the physical address of every CPU's local APIC.
	LAPICAddr = 0xFEE00000
	// IOAPICAddr is the physical address of the single I/O APIC.
	IOAPICAddr = 0xFEC00000
	// IOAPICPins is the number of redirection entries of the I/O APIC.
	IOAPICPins = 24
	// MaxCPUs is the largest vCPU count: 8-bit xAPIC IDs with 0xFF the
	// broadcast ID, and the I/O APIC takes ID NCPUs.
	MaxCPUs = 254
	// SCIIRQ is the ISA IRQ (and GSI) of the ACPI System Control Interrupt,
	// level-triggered, active high.
	SCIIRQ = 9
	// COM1Port and COM1IRQ locate the first 16550 UART.
	COM1Port = 0x3F8
	COM1IRQ  = 4
	// PM1aEventBlock is the port of PM1a_STS (2 bytes) and PM1a_EN (2 bytes).
	PM1aEventBlock = 0x600
	// PM1EventLen is the length in bytes of the PM1a event block.
	PM1EventLen = 4
	// PM1aControlBlock is the port of PM1a_CNT. The guest powers off by
	// writing SLP_TYP=SleepTypeS5 (bits 12-10) with SLP_EN (bit 13).
	// SMI_CMD is 0, so SCI_EN (bit 0) must always read as 1.
	PM1aControlBlock = 0x604
	// PM1ControlLen is the length in bytes of PM1a_CNT.
	PM1ControlLen = 2
	// PMTimerBlock is the port of the 24-bit, 3.579545 MHz ACPI PM timer.
	PMTimerBlock = 0x608
	// PMTimerLen is the length in bytes of the PM timer register.
	PMTimerLen = 4
	// SleepTypeS5 is the SLP_TYP value of the soft-off state (the _S5 package).
	SleepTypeS5 = 5
	// ResetPort and ResetValue form the FADT reset register: writing the
	// value to the port resets the machine.
	ResetPort  = 0xCF9
	ResetValue = 0x06
	// PCIConfigPort is the first of the 8 ports of PCI configuration
	// mechanism #1 (CONFIG_ADDRESS at 0xCF8, CONFIG_DATA at 0xCFC).
	PCIConfigPort = 0xCF8
)

// Identity written into every table header (section 5.2.6).
const (
	oemID       = "GOVSR "
	oemTableID  = "GOVISOR "
	oemRevision = 1
	creatorID   = "GOVR"
	creatorRev  = 1
)

// ErrTooManyCPUs is returned for a vCPU count outside 1..MaxCPUs.
var ErrTooManyCPUs = errors.New("acpi: unsupported number of vCPUs")

// ErrNoSpace is returned when the tables do not fit between Base and Limit.
var ErrNoSpace = errors.New("acpi: tables do not fit in the BIOS area")

// ErrBadWindow is returned for a PCI MMIO window that is empty, wraps,
// or overlaps the fixed devices.
var ErrBadWindow = errors.New("acpi: bad PCI MMIO window")

// ErrBadHotplug is returned for a hot-pluggable slot set the machine cannot have.
var ErrBadHotplug = errors.New("acpi: bad PCI hotplug slots")

// Config describes the machine the tables advertise.
type Config struct {
	// NCPUs is the number of vCPUs; vCPU i has local APIC ID i.
	NCPUs int
	// PCIMMIO32Start and PCIMMIO32End (inclusive) bound the 32-bit PCI
	// memory window, usually 0xC0000000-0xFEBFFFFF.
	PCIMMIO32Start, PCIMMIO32End uint64
	// PCIMMIO64Start and PCIMMIO64Size give the 64-bit PCI memory window;
	// a size of 0 means there is none.
	PCIMMIO64Start, PCIMMIO64Size uint64
	// RTCCenturyIndex is the CMOS register holding the century (the FADT
	// CENTURY field, often 0x32); 0 means the RTC has none.
	RTCCenturyIndex uint8
	// HotplugSlots is the bitmap of PCI bus 0 slots (bit n = slot n) the
	// guest may see devices inserted into and ejected from; 0 means no
	// PCI hotplug (no GPE block either). Slot 0 is the host bridge.
	HotplugSlots uint32
}

// DefaultConfig returns the configuration of a machine with nCPUs vCPUs,
// the usual 32-bit PCI window, no 64-bit window, and the century in CMOS
// register 0x32 as on a PC.
func DefaultConfig(nCPUs int) Config {
	return Config{NCPUs: nCPUs, PCIMMIO32Start: 0xC0000000, PCIMMIO32End: 0xFEBFFFFF, RTCCenturyIndex: 0x32}
}

func (c Config) validate() error {
	if c.NCPUs < 1 || c.NCPUs > MaxCPUs {
		return fmt.Errorf("%w: %d (want 1..%d)", ErrTooManyCPUs, c.NCPUs, MaxCPUs)
	}
	if c.PCIMMIO32Start > c.PCIMMIO32End || c.PCIMMIO32End >= IOAPICAddr {
		return fmt.Errorf("%w: 32-bit window %#x-%#x (must end below %#x)", ErrBadWindow, c.PCIMMIO32Start, c.PCIMMIO32End, IOAPICAddr)
	}
	if c.HotplugSlots&1 != 0 {
		return fmt.Errorf("%w: slot 0 (the host bridge) cannot be hot-pluggable", ErrBadHotplug)
	}
	if c.PCIMMIO64Size != 0 {
		end := c.PCIMMIO64Start + c.PCIMMIO64Size - 1
		if c.PCIMMIO64Start < 1<<32 || end < c.PCIMMIO64Start {
			return fmt.Errorf("%w: 64-bit window %#x+%#x", ErrBadWindow, c.PCIMMIO64Start, c.PCIMMIO64Size)
		}
	}
	return nil
}

// Sizes of the fixed-size tables.
const (
	rsdpSize   = 36  // section 5.2.5.3, revision 2 RSDP
	headerSize = 36  // section 5.2.6
	fadtSize   = 276 // section 5.2.9, revision 6
	facsSize   = 64  // section 5.2.10
)

// Write stores the ACPI tables for cfg between Base and Limit and returns
// the guest-physical address of the RSDP (for boot_params.acpi_rsdp_addr;
// an OS also finds it by scanning the area).
func Write(mem io.WriterAt, cfg Config) (rsdpAddr uint64, err error) {
	img, at, err := build(cfg, Base)
	if err != nil {
		return 0, err
	}
	if _, err := mem.WriteAt(img, Base); err != nil {
		return 0, fmt.Errorf("acpi: write %d bytes at %#x: %w", len(img), Base, err)
	}
	return at.rsdp, nil
}

// placement records where build put each table.
type placement struct {
	rsdp, facs, dsdt, fadt, madt, xsdt, rsdt, end uint64
	tables                                        []uint64 // what the XSDT and RSDT list
}

// build lays the tables out from base and returns the image (starting at
// base) and where each table went.
func build(cfg Config, base uint64) ([]byte, placement, error) {
	var at placement
	if err := cfg.validate(); err != nil {
		return nil, at, err
	}
	dsdt, err := buildDSDT(cfg)
	if err != nil {
		return nil, at, err
	}
	madt := buildMADT(cfg)

	// Layout: RSDP first so a scan finds it at once, FACS on the 64-byte
	// boundary it requires (section 5.2.10), the rest 16-byte aligned.
	l := layout{next: base}
	at.rsdp = l.place(rsdpSize, 16)
	at.facs = l.place(facsSize, 64)
	at.dsdt = l.place(len(dsdt), 16)
	at.fadt = l.place(fadtSize, 16)
	at.madt = l.place(len(madt), 16)
	at.tables = []uint64{at.fadt, at.madt}
	at.xsdt = l.place(headerSize+8*len(at.tables), 16)
	at.rsdt = l.place(headerSize+4*len(at.tables), 16)
	at.end = l.next
	if at.end-base > Limit-Base {
		return nil, at, fmt.Errorf("%w: %d bytes needed, %d available", ErrNoSpace, at.end-base, Limit-Base)
	}

	img := make([]byte, at.end-base)
	put := func(a uint64, b []byte) { copy(img[a-base:], b) }
	put(at.facs, buildFACS())
	put(at.dsdt, dsdt)
	put(at.fadt, buildFADT(cfg, at.facs, at.dsdt))
	put(at.madt, madt)
	put(at.xsdt, buildXSDT(at.tables))
	put(at.rsdt, buildRSDT(at.tables))
	put(at.rsdp, buildRSDP(at.rsdt, at.xsdt))
	return img, at, nil
}

// layout hands out aligned addresses upwards from next.
type layout struct{ next uint64 }

func (l *layout) place(size int, align uint64) uint64 {
	at := (l.next + align - 1) &^ (align - 1)
	l.next = at + uint64(size)
	return at
}

// header returns a table of length bytes starting with the common System
// Description Table Header (section 5.2.6); finish sets its checksum.
func header(sig string, length int, revision byte) []byte {
	t := make([]byte, length)
	copy(t[0:4], sig)
	binary.LittleEndian.PutUint32(t[4:], uint32(length))
	t[8] = revision
	copy(t[10:16], oemID)
	copy(t[16:24], oemTableID)
	binary.LittleEndian.PutUint32(t[24:], oemRevision)
	copy(t[28:32], creatorID)
	binary.LittleEndian.PutUint32(t[32:], creatorRev)
	return t
}

// finish sets the header checksum so that all bytes of t sum to zero.
func finish(t []byte) []byte {
	t[9] = 0
	t[9] = -checksum(t)
	return t
}

// buildRSDP returns the revision 2 Root System Description Pointer
// (section 5.2.5.3) with its 20-byte and extended checksums.
func buildRSDP(rsdt, xsdt uint64) []byte {
	b := make([]byte, rsdpSize)
	copy(b[0:8], "RSD PTR ")
	copy(b[9:15], oemID)
	b[15] = 2 // revision: ACPI 2.0 and later
	binary.LittleEndian.PutUint32(b[16:], uint32(rsdt))
	binary.LittleEndian.PutUint32(b[20:], rsdpSize)
	binary.LittleEndian.PutUint64(b[24:], xsdt)
	b[8] = -checksum(b[:20])
	b[32] = -checksum(b)
	return b
}

// buildXSDT returns the Extended System Description Table (section 5.2.8):
// 64-bit pointers to every table but the DSDT and FACS, which the FADT holds.
func buildXSDT(tables []uint64) []byte {
	t := header("XSDT", headerSize+8*len(tables), 1)
	for i, a := range tables {
		binary.LittleEndian.PutUint64(t[headerSize+8*i:], a)
	}
	return finish(t)
}

// buildRSDT returns the Root System Description Table (section 5.2.7), the
// 32-bit-pointer twin of the XSDT for OSes that predate ACPI 2.0.
func buildRSDT(tables []uint64) []byte {
	t := header("RSDT", headerSize+4*len(tables), 1)
	for i, a := range tables {
		binary.LittleEndian.PutUint32(t[headerSize+4*i:], uint32(a))
	}
	return finish(t)
}

// buildFACS returns a Firmware ACPI Control Structure (section 5.2.10).
// No S3/S4 support: the waking vectors stay 0; the global lock is free.
func buildFACS() []byte {
	b := make([]byte, facsSize)
	copy(b[0:4], "FACS")
	binary.LittleEndian.PutUint32(b[4:], facsSize)
	b[32] = 2 // version
	return b
}
