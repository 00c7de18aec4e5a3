package acpi

import "encoding/binary"

// FADT field offsets (section 5.2.9, table 5.9).
const (
	fadtFirmwareCtrl = 36
	fadtDSDT         = 40
	fadtPMProfile    = 45
	fadtSCIInt       = 46
	fadtSMICmd       = 48
	fadtPM1aEvtBlk   = 56
	fadtPM1aCntBlk   = 64
	fadtPMTmrBlk     = 76
	fadtGPE0Blk      = 80
	fadtPM1EvtLen    = 88
	fadtPM1CntLen    = 89
	fadtPMTmrLen     = 91
	fadtGPE0BlkLen   = 92
	fadtCentury      = 108
	fadtIAPCBootArch = 109
	fadtFlags        = 112
	fadtResetReg     = 116
	fadtResetValue   = 128
	fadtMinorVersion = 131
	fadtXDSDT        = 140
	fadtXPM1aEvtBlk  = 148
	fadtXPM1aCntBlk  = 172
	fadtXPMTmrBlk    = 208
	fadtXGPE0Blk     = 220
	fadtHypervisorID = 268
)

// FADT Flags (section 5.2.9, table 5.10).
const (
	fadtFlagWBINVD      = 1 << 0
	fadtFlagProcC1      = 1 << 2
	fadtFlagSlpButton   = 1 << 5 // sleep button: none as a fixed feature
	fadtFlagFixRTC      = 1 << 6 // no RTC wake status in the fixed registers
	fadtFlagResetRegSup = 1 << 10
)

// IA-PC boot architecture flags (section 5.2.9.3, table 5.11).
const (
	bootArchLegacyDevices = 1 << 0
	bootArch8042          = 1 << 1
	bootArchVGANotPresent = 1 << 2
)

// Generic Address Structure (section 5.2.3.2) address space IDs and access sizes.
const (
	gasSystemIO   = 1
	gasAccessByte = 1
	gasAccessWord = 2
	gasAccessDW   = 3
)

// putGAS writes a Generic Address Structure at b.
func putGAS(b []byte, space, bitWidth, access byte, addr uint64) {
	b[0] = space
	b[1] = bitWidth
	b[2] = 0 // bit offset
	b[3] = access
	binary.LittleEndian.PutUint64(b[4:], addr)
}

// buildFADT returns the revision 6 Fixed ACPI Description Table (section
// 5.2.9) of a machine that is not hardware-reduced: it has the PM1a event
// and control blocks and the PM timer as legacy port I/O registers, the
// SCI on IRQ 9, and is always in ACPI mode (SMI_CMD 0, section 4.8.2.5.1).
func buildFADT(cfg Config, facs, dsdt uint64) []byte {
	t := header("FACP", fadtSize, 6)
	le := binary.LittleEndian
	le.PutUint32(t[fadtFirmwareCtrl:], uint32(facs))
	le.PutUint32(t[fadtDSDT:], uint32(dsdt))
	t[fadtPMProfile] = 0 // unspecified
	le.PutUint16(t[fadtSCIInt:], SCIIRQ)
	le.PutUint32(t[fadtSMICmd:], 0) // no SMI command port: ACPI mode is fixed on
	le.PutUint32(t[fadtPM1aEvtBlk:], PM1aEventBlock)
	le.PutUint32(t[fadtPM1aCntBlk:], PM1aControlBlock)
	le.PutUint32(t[fadtPMTmrBlk:], PMTimerBlock)
	t[fadtPM1EvtLen] = PM1EventLen
	t[fadtPM1CntLen] = PM1ControlLen
	t[fadtPMTmrLen] = PMTimerLen
	t[fadtCentury] = cfg.RTCCenturyIndex
	le.PutUint16(t[fadtIAPCBootArch:], bootArchLegacyDevices|bootArch8042|bootArchVGANotPresent)
	// The power button is a fixed feature (PWR_BUTTON clear): the VMM asks
	// for an orderly shutdown by setting PWRBTN_STS and raising the SCI.
	// TMR_VAL_EXT is clear: the PM timer is 24 bits wide.
	le.PutUint32(t[fadtFlags:], fadtFlagWBINVD|fadtFlagProcC1|fadtFlagSlpButton|fadtFlagFixRTC|fadtFlagResetRegSup)
	putGAS(t[fadtResetReg:], gasSystemIO, 8, gasAccessByte, ResetPort)
	t[fadtResetValue] = ResetValue
	t[fadtMinorVersion] = 5 // FADT 6.5
	// X_FIRMWARE_CTRL stays 0: the FACS is below 4 GiB and the spec wants
	// only one of the two FACS pointers set.
	le.PutUint64(t[fadtXDSDT:], dsdt)
	putGAS(t[fadtXPM1aEvtBlk:], gasSystemIO, 8*PM1EventLen, gasAccessWord, PM1aEventBlock)
	putGAS(t[fadtXPM1aCntBlk:], gasSystemIO, 8*PM1ControlLen, gasAccessWord, PM1aControlBlock)
	putGAS(t[fadtXPMTmrBlk:], gasSystemIO, 8*PMTimerLen, gasAccessDW, PMTimerBlock)
	if cfg.HotplugSlots != 0 {
		// A GPE0 block (sections 5.2.9 and 4.8.4.1) for PCI hotplug events;
		// GPE registers are accessed a byte at a time.
		le.PutUint32(t[fadtGPE0Blk:], GPE0Block)
		t[fadtGPE0BlkLen] = GPE0BlockLen
		putGAS(t[fadtXGPE0Blk:], gasSystemIO, 8*GPE0BlockLen, gasAccessByte, GPE0Block)
	}
	copy(t[fadtHypervisorID:], "GOVISOR\x00")
	return finish(t)
}
