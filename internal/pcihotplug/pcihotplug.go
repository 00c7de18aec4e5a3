// Package pcihotplug emulates the VMM side of ACPI PCI hotplug on bus 0, in
// the manner of QEMU's PIIX4 "acpi-pci-hotplug": a general-purpose event
// (GPE) block the FADT points to, and a small register block the DSDT's
// _GPE._E01 method reads to learn which slots to Notify.
//
// The guest-visible protocol (the AML in internal/x86/acpi implements the
// guest half):
//
//   - The VMM inserts a device: the slot's bit is set in UP and GPE0_STS
//     bit GPEBit is set; with GPE0_EN bit GPEBit set the SCI is raised.
//   - The VMM asks for a removal: the slot's bit is set in DOWN and the
//     GPE fires the same way.
//   - The guest's _E01 reads UP and DOWN (each read clears the bits it
//     returns) and Notifies each slot: 1 (Device Check) for UP, 3 (Eject
//     Request) for DOWN (ACPI 6.5 section 5.6.6, table 5.166).
//   - After unbinding its driver the guest runs the slot's _EJ0 (section
//     6.3.3), which writes the slot's bit to EJECT; the VMM then removes
//     the device.
//
// Section numbers refer to the ACPI Specification 6.5.
package pcihotplug

import (
	"errors"
	"fmt"
	"sync"

	"github.com/govisor/govisor/internal/iobus"
)

// Port-I/O layout; the FADT (GPE0_BLK) and the DSDT (OperationRegion of
// the hotplug registers) must carry the same values.
const (
	// GPEBase is GPE0_BLK: GPE0_STS (GPELen/2 bytes) then GPE0_EN
	// (GPELen/2 bytes), as section 5.2.9 and 4.8.4.1 lay out a GPE block.
	GPEBase = 0x620
	// GPELen is GPE0_BLK_LEN: 16 GPEs.
	GPELen = 4
	// GPEBit is the GPE number of PCI hotplug events: the DSDT's \_GPE._E01.
	GPEBit = 1

	// Base is the first port of the hotplug registers.
	Base = 0x630
	// Size is the length of the hotplug register block.
	Size = 12
	// RegUp is the offset of UP: slots with an insertion to report (read clears).
	RegUp = 0
	// RegDown is the offset of DOWN: slots with a removal request to report
	// (read clears).
	RegDown = 4
	// RegEject is the offset of EJECT: the guest writes a slot's bit from
	// its _EJ0 to remove the device; reads return 0.
	RegEject = 8
)

// NumSlots is the number of device slots on PCI bus 0.
const NumSlots = 32

// Sentinel errors.
var (
	// ErrNotHotplug is returned for a slot that is not hot-pluggable.
	ErrNotHotplug = errors.New("pcihotplug: slot is not hot-pluggable")
)

// Controller is the hotplug register set. It is safe for concurrent use.
type Controller struct {
	mu        sync.Mutex
	slots     uint32 // hot-pluggable slots
	up, down  uint32
	sts, en   uint16
	level     bool
	lineMu    sync.Mutex // orders SCI level reports
	sci       func(level bool)
	eject     func(slot int)
	ejections uint64
}

// New returns a controller for the hot-pluggable slots in the bitmap slots
// (bit n = slot n). sci reports the level of the GPE's share of the SCI;
// eject is called, without locks held, for each hot-pluggable slot the
// guest ejects. Either may be nil.
func New(slots uint32, sci func(level bool), eject func(slot int)) *Controller {
	return &Controller{slots: slots, sci: sci, eject: eject}
}

// Slots returns the bitmap of hot-pluggable slots.
func (c *Controller) Slots() uint32 { return c.slots }

func (c *Controller) check(slot int) error {
	if slot < 0 || slot >= NumSlots || c.slots&(1<<slot) == 0 {
		return fmt.Errorf("%w: %d", ErrNotHotplug, slot)
	}
	return nil
}

// Insert reports a device newly present in slot: the guest gets a Device
// Check notification for it.
func (c *Controller) Insert(slot int) error {
	if err := c.check(slot); err != nil {
		return err
	}
	c.mu.Lock()
	c.up |= 1 << slot
	c.down &^= 1 << slot
	c.sts |= 1 << GPEBit
	c.unlockAndUpdate()
	return nil
}

// RequestRemoval asks the guest to release the device in slot: it gets an
// Eject Request notification and answers by running _EJ0.
func (c *Controller) RequestRemoval(slot int) error {
	if err := c.check(slot); err != nil {
		return err
	}
	c.mu.Lock()
	c.down |= 1 << slot
	c.up &^= 1 << slot
	c.sts |= 1 << GPEBit
	c.unlockAndUpdate()
	return nil
}

// Ejections returns how many slot ejections the guest has made.
func (c *Controller) Ejections() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ejections
}

// unlockAndUpdate releases mu and reports a changed SCI level; lineMu is
// taken before mu is released so that concurrent changes reach the line
// in the order they happened.
func (c *Controller) unlockAndUpdate() {
	level := c.sts&c.en != 0
	changed := level != c.level
	c.level = level
	if changed {
		c.lineMu.Lock()
	}
	c.mu.Unlock()
	if changed {
		if c.sci != nil {
			c.sci(level)
		}
		c.lineMu.Unlock()
	}
}

// GPEDevice returns the iobus.Device for the GPE0 block at GPEBase.
func (c *Controller) GPEDevice() iobus.Device { return gpeRegs{c} }

// Device returns the iobus.Device for the hotplug registers at Base.
func (c *Controller) Device() iobus.Device { return hpRegs{c} }

// gpeRegs is GPE0_STS and GPE0_EN. Status bits are cleared by writing 1
// (section 4.8.4.1.1); enable bits are read/write. ACPICA accesses each
// byte on its own, but any width is served byte by byte.
type gpeRegs struct{ c *Controller }

func (g gpeRegs) Read(offset uint64, data []byte) {
	c := g.c
	c.mu.Lock()
	for i := range data {
		data[i] = c.gpeByte(offset + uint64(i))
	}
	c.mu.Unlock()
}

func (c *Controller) gpeByte(off uint64) byte {
	switch off {
	case 0, 1:
		return byte(c.sts >> (8 * off))
	case 2, 3:
		return byte(c.en >> (8 * (off - 2)))
	}
	return 0xFF
}

func (g gpeRegs) Write(offset uint64, data []byte) {
	c := g.c
	c.mu.Lock()
	for i, b := range data {
		switch off := offset + uint64(i); off {
		case 0, 1:
			c.sts &^= uint16(b) << (8 * off)
		case 2, 3:
			shift := 8 * (off - 2)
			c.en = c.en&^(0xFF<<shift) | uint16(b)<<shift
		}
	}
	c.unlockAndUpdate()
}

// hpRegs is UP, DOWN and EJECT.
type hpRegs struct{ c *Controller }

func (h hpRegs) Read(offset uint64, data []byte) {
	c := h.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		off := offset + uint64(i)
		shift := 8 * (off % 4)
		var reg *uint32
		switch off / 4 {
		case RegUp / 4:
			reg = &c.up
		case RegDown / 4:
			reg = &c.down
		default:
			data[i] = 0
			continue
		}
		data[i] = byte(*reg >> shift)
		*reg &^= 0xFF << shift
	}
}

func (h hpRegs) Write(offset uint64, data []byte) {
	c := h.c
	var ej uint32
	for i, b := range data {
		off := offset + uint64(i)
		if off/4 == RegEject/4 {
			ej |= uint32(b) << (8 * (off % 4))
		}
	}
	ej &= c.slots
	if ej == 0 {
		return
	}
	c.mu.Lock()
	c.down &^= ej
	c.up &^= ej
	for s := 0; s < NumSlots; s++ {
		if ej&(1<<s) != 0 {
			c.ejections++
		}
	}
	c.mu.Unlock()
	if c.eject == nil {
		return
	}
	for s := 0; s < NumSlots; s++ {
		if ej&(1<<s) != 0 {
			c.eject(s)
		}
	}
}

// State is the controller's register state, for snapshots and migration.
type State struct {
	Up, Down uint32
	GPESts   uint16
	GPEEn    uint16
}

// SaveState returns the registers.
func (c *Controller) SaveState() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return State{Up: c.up, Down: c.down, GPESts: c.sts, GPEEn: c.en}
}

// RestoreState loads s (bits of slots that are not hot-pluggable are
// dropped) and reports the resulting SCI level.
func (c *Controller) RestoreState(s State) {
	c.mu.Lock()
	c.up, c.down = s.Up&c.slots, s.Down&c.slots
	c.sts, c.en = s.GPESts, s.GPEEn
	c.level = !(c.sts&c.en != 0) // force a report of the restored level
	c.unlockAndUpdate()
}
