// Package pci implements PCI bus 0 of the VM: configuration mechanism #1
// (PCI Local Bus 3.0 section 3.2.2.3.2), a host bridge at 00:00.0, and a
// reusable configuration space with BARs and capabilities for devices.
//
// Register the bus's two port ranges:
//
//	io.Register(pci.ConfigAddressPort, 4, bus.AddressDevice())
//	io.Register(pci.ConfigDataPort, 4, bus.DataDevice())
//
// As on real chipsets, only 32-bit accesses to 0xCF8 reach CONFIG_ADDRESS;
// a byte access to 0xCF9 is the reset control register, so the bus takes
// the machine's reset function and nothing else may claim port 0xCF9.
package pci

import (
	"errors"
	"fmt"
	"sync"

	"github.com/govisor/govisor/internal/iobus"
)

// Port addresses of configuration mechanism #1 and the reset control.
const (
	ConfigAddressPort = 0xCF8
	ConfigDataPort    = 0xCFC
	ConfigPortSize    = 4
	ResetControlPort  = 0xCF9
)

// Host bridge identity: Red Hat's "QEMU PCIe host bridge" ID, which no
// Linux driver binds to, so the guest sees a plain host bridge and does
// not probe chipset registers it would find on an Intel ID.
const (
	HostBridgeVendorID = 0x1B36
	HostBridgeDeviceID = 0x0008
	classHostBridge    = 0x060000
)

// Slots usable for devices; slot 0 holds the host bridge.
const (
	FirstSlot = 1
	NumSlots  = 32
)

// CONFIG_ADDRESS fields.
const (
	addrEnable   = 1 << 31
	addrWritable = addrEnable | 0x00FFFFFC // reserved bits 30:24 and 1:0 read 0
	addrBusShift = 16
	addrDevShift = 11
	addrFnShift  = 8
	addrRegMask  = 0xFC
)

// Reset control register bits (Intel ICH9 datasheet 13.7.5 "RST_CNT").
const (
	rstCPU    = 1 << 2
	rstStored = 1<<1 | 1<<3 // SYS_RST, FULL_RST
)

// Sentinel errors.
var (
	ErrBadSlot  = errors.New("pci: slot out of range")
	ErrSlotUsed = errors.New("pci: slot already in use")
)

// Device is one function's configuration space; offset is within the
// 256 bytes and len(data) is 1, 2 or 4.
type Device interface {
	ConfigRead(offset uint16, data []byte)
	ConfigWrite(offset uint16, data []byte)
}

// Bus is PCI bus 0 behind the host bridge, with single-function devices.
// It is safe for concurrent use.
type Bus struct {
	mu      sync.Mutex
	addr    uint32 // CONFIG_ADDRESS
	rstCnt  byte
	devices [NumSlots]Device
	// fixed holds functions other than 0 (key slot<<3|fn), see AddFunction.
	fixed map[int]Device
	reset func()
}

// NewBus returns bus 0 with the host bridge at slot 0; reset (may be nil)
// is called when the guest writes RST_CPU to port 0xCF9.
func NewBus(reset func()) *Bus {
	b := &Bus{reset: reset}
	b.devices[0] = NewHostBridge()
	return b
}

// NewHostBridge returns the configuration space of the host bridge function.
func NewHostBridge() *ConfigSpace {
	return NewConfigSpace(Header{
		VendorID:          HostBridgeVendorID,
		DeviceID:          HostBridgeDeviceID,
		Class:             classHostBridge,
		SubsystemVendorID: HostBridgeVendorID,
		SubsystemID:       0x1100, // QEMU's default subsystem ID
	})
}

// HostBridge returns the configuration space of the host bridge at 00:00.0.
func (b *Bus) HostBridge() *ConfigSpace {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.devices[0].(*ConfigSpace)
}

// AddDevice places d as function 0 of slot (FirstSlot..NumSlots-1).
func (b *Bus) AddDevice(slot int, d Device) error {
	if slot < FirstSlot || slot >= NumSlots {
		return fmt.Errorf("%w: %d", ErrBadSlot, slot)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.devices[slot] != nil {
		return fmt.Errorf("%w: %d", ErrSlotUsed, slot)
	}
	b.devices[slot] = d
	return nil
}

// AddFunction places d as function fn (1-7) of slot (0..NumSlots-1): a
// chipset function firmware reaches at a fixed address, such as the PIIX4
// power management function at 00:01.3 that OVMF reads its ACPI I/O base
// from. Enumeration (firmware's and the OS's) looks past function 0 only
// when function 0 sets the multi-function bit (PCI 3.0 section 6.2.1,
// Header Type), which govisor's devices do not: such a function stays
// invisible to them.
func (b *Bus) AddFunction(slot, fn int, d Device) error {
	if slot < 0 || slot >= NumSlots || fn < 1 || fn > 7 {
		return fmt.Errorf("%w: %d.%d", ErrBadSlot, slot, fn)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fixed == nil {
		b.fixed = map[int]Device{}
	}
	if b.fixed[slot<<3|fn] != nil {
		return fmt.Errorf("%w: %d.%d", ErrSlotUsed, slot, fn)
	}
	b.fixed[slot<<3|fn] = d
	return nil
}

// device returns the function at bus/slot/fn, or nil if absent.
func (b *Bus) device(bus, slot, fn int) Device {
	if bus != 0 || slot < 0 || slot >= NumSlots || fn < 0 || fn > 7 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if fn != 0 {
		return b.fixed[slot<<3|fn]
	}
	return b.devices[slot]
}

// ConfigRead reads function slot.fn of bus 0 at offset; absent functions
// read as all ones (a master abort). It is the entry point for other
// configuration mechanisms, such as an ECAM window.
func (b *Bus) ConfigRead(slot, fn int, offset uint16, data []byte) {
	b.access(b.device(0, slot, fn), offset, data, false)
}

// ConfigWrite writes function slot.fn of bus 0; writes to absent
// functions are dropped.
func (b *Bus) ConfigWrite(slot, fn int, offset uint16, data []byte) {
	b.access(b.device(0, slot, fn), offset, data, true)
}

// access forwards to d in pieces the Device contract allows: a naturally
// aligned access of 1, 2 or 4 bytes, else byte by byte.
func (b *Bus) access(d Device, offset uint16, data []byte, write bool) {
	if d == nil || int(offset) >= ConfigSize {
		if !write {
			fill(data)
		}
		return
	}
	n := len(data)
	if int(offset)+n > ConfigSize {
		n = ConfigSize - int(offset)
		if !write {
			fill(data[n:])
		}
		data = data[:n]
	}
	if (n == 1 || n == 2 || n == 4) && int(offset)%n == 0 {
		if write {
			d.ConfigWrite(offset, data)
		} else {
			d.ConfigRead(offset, data)
		}
		return
	}
	for i := range data {
		if write {
			d.ConfigWrite(offset+uint16(i), data[i:i+1])
		} else {
			d.ConfigRead(offset+uint16(i), data[i:i+1])
		}
	}
}

func fill(data []byte) {
	for i := range data {
		data[i] = 0xFF
	}
}

// AddressDevice returns the iobus.Device for ConfigAddressPort (size 4).
func (b *Bus) AddressDevice() iobus.Device { return addressPort{b} }

// DataDevice returns the iobus.Device for ConfigDataPort (size 4).
func (b *Bus) DataDevice() iobus.Device { return dataPort{b} }

type addressPort struct{ b *Bus }

// Read implements iobus.Device: CONFIG_ADDRESS for 32-bit accesses at
// offset 0, the reset control for byte accesses at offset 1.
func (p addressPort) Read(offset uint64, data []byte) {
	b := p.b
	fill(data)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case offset == 0 && len(data) == 4:
		putLE(data, b.addr)
	case offset == ResetControlPort-ConfigAddressPort && len(data) == 1:
		data[0] = b.rstCnt
	}
}

// Write implements iobus.Device; see Read.
func (p addressPort) Write(offset uint64, data []byte) {
	b := p.b
	b.mu.Lock()
	doReset := false
	switch {
	case offset == 0 && len(data) == 4:
		b.addr = getLE(data) & addrWritable
	case offset == ResetControlPort-ConfigAddressPort && len(data) == 1:
		b.rstCnt = data[0] & rstStored
		doReset = data[0]&rstCPU != 0
	}
	// Other byte and word accesses are ordinary I/O cycles nothing
	// claims (Linux's pci_check_type1 writes 0xCFB this way).
	b.mu.Unlock()
	if doReset && b.reset != nil {
		b.reset()
	}
}

type dataPort struct{ b *Bus }

// target decodes CONFIG_ADDRESS for an access at CONFIG_DATA offset off.
func (p dataPort) target(off uint64) (d Device, reg uint16, ok bool) {
	b := p.b
	b.mu.Lock()
	a := b.addr
	b.mu.Unlock()
	if a&addrEnable == 0 || off >= ConfigPortSize {
		return nil, 0, false
	}
	bus := int(a>>addrBusShift) & 0xFF
	slot := int(a>>addrDevShift) & 0x1F
	fn := int(a>>addrFnShift) & 0x7
	return b.device(bus, slot, fn), uint16(a&addrRegMask) + uint16(off), true
}

// Read implements iobus.Device. With the enable bit clear, or for an
// absent function, the cycle master-aborts and reads all ones.
func (p dataPort) Read(offset uint64, data []byte) {
	d, reg, ok := p.target(offset)
	if !ok {
		fill(data)
		return
	}
	n := min(len(data), ConfigPortSize-int(offset))
	fill(data[n:])
	p.b.access(d, reg, data[:n], false)
}

// Write implements iobus.Device; see Read.
func (p dataPort) Write(offset uint64, data []byte) {
	d, reg, ok := p.target(offset)
	if !ok {
		return
	}
	n := min(len(data), ConfigPortSize-int(offset))
	p.b.access(d, reg, data[:n], true)
}

func putLE(d []byte, v uint32) {
	for i := range d {
		d[i] = byte(v >> (8 * i))
	}
}

func getLE(d []byte) uint32 {
	var v uint32
	for i := len(d) - 1; i >= 0; i-- {
		v = v<<8 | uint32(d[i])
	}
	return v
}

// BusState is the bus's own register state, for snapshots; the devices
// save their configuration spaces themselves.
type BusState struct {
	ConfigAddress uint32
	ResetControl  byte
}

// SaveState returns the bus registers.
func (b *Bus) SaveState() BusState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BusState{ConfigAddress: b.addr, ResetControl: b.rstCnt}
}

// RestoreState loads s.
func (b *Bus) RestoreState(s BusState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addr = s.ConfigAddress & addrWritable
	b.rstCnt = s.ResetControl & rstStored
}
