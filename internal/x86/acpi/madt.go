package acpi

import "encoding/binary"

// MADT structure types and sizes (section 5.2.12, table 5.21).
const (
	madtLocalAPIC      = 0 // 5.2.12.2
	madtIOAPIC         = 1 // 5.2.12.3
	madtIntSrcOverride = 2 // 5.2.12.5
	madtLocalAPICNMI   = 4 // 5.2.12.7

	madtLocalAPICLen      = 8
	madtIOAPICLen         = 12
	madtIntSrcOverrideLen = 10
	madtLocalAPICNMILen   = 6

	madtFlagPCATCompat = 1 << 0 // dual 8259s present: the OS must mask them
	madtLAPICEnabled   = 1 << 0

	madtRevision = 5 // as defined since ACPI 6.3
)

// MPS INTI flags (section 5.2.12.5, table 5.26).
const (
	intiActiveHigh = 1 << 0
	intiLevel      = 3 << 2
)

// madtSize returns the length of the MADT for n vCPUs.
func madtSize(n int) int {
	return headerSize + 8 + n*madtLocalAPICLen + madtIOAPICLen + 2*madtIntSrcOverrideLen + madtLocalAPICNMILen
}

// buildMADT returns the Multiple APIC Description Table (section 5.2.12):
// one enabled local APIC per vCPU (ACPI processor UID = APIC ID = index),
// the I/O APIC with GSIs 0-23, the PC's interrupt source overrides, and
// NMI on LINT1 of every local APIC.
func buildMADT(cfg Config) []byte {
	t := header("APIC", madtSize(cfg.NCPUs), madtRevision)
	le := binary.LittleEndian
	le.PutUint32(t[36:], LAPICAddr)
	le.PutUint32(t[40:], madtFlagPCATCompat)
	off := headerSize + 8
	for i := 0; i < cfg.NCPUs; i++ {
		e := t[off : off+madtLocalAPICLen]
		e[0], e[1] = madtLocalAPIC, madtLocalAPICLen
		e[2] = byte(i) // ACPI processor UID
		e[3] = byte(i) // APIC ID
		le.PutUint32(e[4:], madtLAPICEnabled)
		off += madtLocalAPICLen
	}
	{
		e := t[off : off+madtIOAPICLen]
		e[0], e[1] = madtIOAPIC, madtIOAPICLen
		e[2] = byte(cfg.NCPUs) // I/O APIC ID
		le.PutUint32(e[4:], IOAPICAddr)
		le.PutUint32(e[8:], 0) // global system interrupt base
		off += madtIOAPICLen
	}
	// The PIT's IRQ 0 arrives on I/O APIC pin 2, as on every PC; the SCI
	// is level-triggered and active high (section 5.2.12.5), unlike an ISA
	// IRQ's default of edge/active high.
	for _, o := range []struct {
		irq   byte
		gsi   uint32
		flags uint16
	}{{0, 2, 0}, {SCIIRQ, SCIIRQ, intiActiveHigh | intiLevel}} {
		e := t[off : off+madtIntSrcOverrideLen]
		e[0], e[1] = madtIntSrcOverride, madtIntSrcOverrideLen
		e[2] = 0 // bus: ISA
		e[3] = o.irq
		le.PutUint32(e[4:], o.gsi)
		le.PutUint16(e[8:], o.flags)
		off += madtIntSrcOverrideLen
	}
	{
		e := t[off : off+madtLocalAPICNMILen]
		e[0], e[1] = madtLocalAPICNMI, madtLocalAPICNMILen
		e[2] = 0xFF // all processors
		le.PutUint16(e[3:], 0)
		e[5] = 1 // LINT1
	}
	return finish(t)
}
