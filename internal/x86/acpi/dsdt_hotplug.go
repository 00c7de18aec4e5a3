package acpi

import "fmt"

// ACPI PCI hotplug, as QEMU's PIIX4 machine does it for Linux's acpiphp
// driver: a GPE block in the FADT (sections 4.8.4.1 and 5.6.4), one
// Device(Sxx) per hot-pluggable slot of PCI0 with _ADR, _SUN and _EJ0
// (section 6.3.3), and a \_GPE._E01 method that reads the VMM's hotplug
// registers and Notifies the slots (section 5.6.6). The VMM's half is
// internal/pcihotplug, whose ports must match these.
const (
	// GPE0Block is the port of GPE0_BLK: GPE0_STS then GPE0_EN.
	GPE0Block = 0x620
	// GPE0BlockLen is GPE0_BLK_LEN in bytes (16 GPEs).
	GPE0BlockLen = 4
	// HotplugGPE is the GPE number of PCI hotplug events (\_GPE._E01).
	HotplugGPE = 1
	// PCIHotplugBase is the port of the hotplug registers: UP (slots
	// inserted, 32 bits, read clears), DOWN (slots to remove, 32 bits,
	// read clears), EJECT (32 bits, written by _EJ0).
	PCIHotplugBase = 0x630
	// PCIHotplugLen is the length of the hotplug registers.
	PCIHotplugLen = 12
	// hotplugFirstSlot is the lowest slot that may be hot-pluggable: slot 0
	// is the host bridge.
	hotplugFirstSlot = 1
)

// slotName returns the ACPI name of the device object for a PCI slot.
func slotName(slot int) string { return fmt.Sprintf("S%02X", slot) }

// hotplugObjects appends, inside Device(PCI0), the hotplug registers, one
// slot device per bit of slots and the PCNT method. In ASL:
//
//	OperationRegion (PCST, SystemIO, 0x0630, 0x0C)
//	Field (PCST, DWordAcc, NoLock, WriteAsZeros) { PCIU, 32, PCID, 32, B0EJ, 32 }
//	Device (S05) {                      // for each hot-pluggable slot n
//	    Name (_ADR, 0x00050000)         // device n, function 0 (section 6.1.1)
//	    Name (_SUN, 5)                  // slot user number (section 6.1.12)
//	    Method (_EJ0, 1) { B0EJ = 0x20 } // eject: tell the VMM (section 6.3.3)
//	}
//	Method (PCNT, 0) {
//	    Local0 = PCIU
//	    Local1 = PCID
//	    If (Local0 & 0x20) { Notify (S05, 1) } // Device Check
//	    If (Local1 & 0x20) { Notify (S05, 3) } // Eject Request
//	}
func (a *amlBuilder) hotplugObjects(slots uint32) {
	a.opRegionIO("PCST", PCIHotplugBase, PCIHotplugLen)
	a.fieldDWordAcc("PCST", []fieldUnit{{"PCIU", 32}, {"PCID", 32}, {"B0EJ", 32}})
	for n := hotplugFirstSlot; n < 32; n++ {
		if slots&(1<<n) == 0 {
			continue
		}
		a.device(slotName(n), func() {
			a.name("_ADR", func() { a.integer(uint64(n) << 16) })
			a.name("_SUN", func() { a.integer(uint64(n)) })
			a.method("_EJ0", 1, func() {
				a.store(func() { a.integer(1 << n) }, func() { a.nameString("B0EJ") })
			})
		})
	}
	a.method("PCNT", 0, func() {
		a.store(func() { a.nameString("PCIU") }, func() { a.local(0) })
		a.store(func() { a.nameString("PCID") }, func() { a.local(1) })
		for n := hotplugFirstSlot; n < 32; n++ {
			if slots&(1<<n) == 0 {
				continue
			}
			a.ifAnd(func() { a.local(0) }, 1<<n, func() { a.notify(slotName(n), notifyDeviceCheck) })
			a.ifAnd(func() { a.local(1) }, 1<<n, func() { a.notify(slotName(n), notifyEjectRequest) })
		}
	})
}

// gpeScope appends the GPE handler: Scope (\_GPE) { Method (_E01) {
// \_SB.PCI0.PCNT () } }. The _Exx name makes it edge-triggered: OSPM
// clears GPE0_STS before running it (section 5.6.4.1.1).
func (a *amlBuilder) gpeScope() {
	a.scope(`\_GPE`, func() {
		a.method(fmt.Sprintf("_E%02X", HotplugGPE), 0, func() { a.call(`\_SB.PCI0.PCNT`) })
	})
}
