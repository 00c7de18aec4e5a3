package pci

import (
	"errors"
	"sync"
)

// Configuration header offsets (PCI Local Bus 3.0 section 6.1, type 0).
const (
	RegVendorID      = 0x00
	RegDeviceID      = 0x02
	RegCommand       = 0x04
	RegStatus        = 0x06
	RegRevision      = 0x08
	RegClass         = 0x09 // 3 bytes: programming interface, subclass, base class
	RegCacheLineSize = 0x0C
	RegLatencyTimer  = 0x0D
	RegHeaderType    = 0x0E
	RegBAR0          = 0x10
	RegSubsysVendor  = 0x2C
	RegSubsysID      = 0x2E
	RegExpansionROM  = 0x30
	RegCapPtr        = 0x34
	RegInterruptLine = 0x3C
	RegInterruptPin  = 0x3D

	// ConfigSize is the size of a conventional PCI configuration space.
	ConfigSize = 256
)

// Command register bits (section 6.2.2).
const (
	CommandIO          = 1 << 0
	CommandMemory      = 1 << 1
	CommandBusMaster   = 1 << 2
	CommandParity      = 1 << 6
	CommandSERR        = 1 << 8
	CommandIntxDisable = 1 << 10
	commandWritable    = CommandIO | CommandMemory | CommandBusMaster | CommandParity | CommandSERR | CommandIntxDisable
	statusIntx         = 1 << 3
	StatusCapList      = 1 << 4
	statusW1C          = 0xF900 // parity, SERR, aborts, master data parity error
	firstCapOffset     = 0x40
	capHeaderLen       = 2
	interruptLineNone  = 0xFF
)

// Sentinel errors.
var (
	ErrBadBAR  = errors.New("pci: invalid BAR definition")
	ErrNoSpace = errors.New("pci: no room left in configuration space")
)

// Header holds the read-only identity of a function.
type Header struct {
	VendorID, DeviceID uint16
	Revision           uint8
	Class              uint32 // base class << 16 | subclass << 8 | programming interface
	SubsystemVendorID  uint16
	SubsystemID        uint16
	// InterruptPin is 1-4 for INTA#-INTD#, 0 for none.
	InterruptPin uint8
}

// ConfigSpace is a type 0 configuration space with per-bit write masks,
// write-1-to-clear bits, BARs and a capability list. Devices embed a
// *ConfigSpace to implement Device. It is safe for concurrent use.
type ConfigSpace struct {
	// OnBARChange, if set, is called (without locks held) when the
	// address a BAR decodes changes: old and new are Unmapped when
	// decoding is off. Set it before the guest can reach the device.
	OnBARChange func(bar int, old, new uint64)

	mu      sync.Mutex
	data    [ConfigSize]byte
	wmask   [ConfigSize]byte // bits the guest may write
	w1c     [ConfigSize]byte // bits the guest clears by writing 1
	bars    [numBARs]bar
	mapped  [numBARs]uint64 // last reported decode address per BAR
	lastCap uint16          // offset of the last capability, 0 if none
	nextCap uint16          // first free byte for a capability
}

// NewConfigSpace returns a configuration space with identity h, the
// command register's defined bits writable and the status error bits W1C.
func NewConfigSpace(h Header) *ConfigSpace {
	c := &ConfigSpace{nextCap: firstCapOffset}
	for i := range c.mapped {
		c.mapped[i] = Unmapped
	}
	c.put16(RegVendorID, h.VendorID)
	c.put16(RegDeviceID, h.DeviceID)
	c.data[RegRevision] = h.Revision
	c.data[RegClass] = byte(h.Class)
	c.data[RegClass+1] = byte(h.Class >> 8)
	c.data[RegClass+2] = byte(h.Class >> 16)
	c.put16(RegSubsysVendor, h.SubsystemVendorID)
	c.put16(RegSubsysID, h.SubsystemID)
	c.data[RegInterruptPin] = h.InterruptPin
	c.data[RegInterruptLine] = interruptLineNone
	c.setMask16(c.wmask[:], RegCommand, commandWritable)
	c.setMask16(c.w1c[:], RegStatus, statusW1C)
	c.wmask[RegCacheLineSize] = 0xFF
	c.wmask[RegLatencyTimer] = 0xFF
	c.wmask[RegInterruptLine] = 0xFF
	return c
}

func (c *ConfigSpace) put16(off uint16, v uint16) {
	c.data[off], c.data[off+1] = byte(v), byte(v>>8)
}

func (c *ConfigSpace) setMask16(m []byte, off uint16, v uint16) {
	m[off], m[off+1] = byte(v), byte(v>>8)
}

func (c *ConfigSpace) get(off uint16, n int) uint64 {
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(c.data[int(off)+i])
	}
	return v
}

// ConfigRead implements Device. Bytes beyond the 256-byte space read as
// all ones, as for an absent PCIe extended space.
func (c *ConfigSpace) ConfigRead(offset uint16, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		o := int(offset) + i
		if o >= ConfigSize {
			data[i] = 0xFF
			continue
		}
		data[i] = c.data[o]
	}
}

// ConfigWrite implements Device: each bit changes only where the write
// mask allows, and bits in W1C positions are cleared by writing 1.
func (c *ConfigSpace) ConfigWrite(offset uint16, data []byte) {
	c.mu.Lock()
	for i, v := range data {
		o := int(offset) + i
		if o >= ConfigSize {
			break
		}
		m := c.wmask[o]
		c.data[o] = (c.data[o]&^m | v&m) &^ (v & c.w1c[o])
	}
	var changes []barChange
	end := int(offset) + len(data)
	if overlaps(int(offset), end, RegCommand, RegCommand+2) || overlaps(int(offset), end, RegBAR0, RegBAR0+4*numBARs) {
		changes = c.updateMappings()
	}
	cb := c.OnBARChange
	c.mu.Unlock()
	if cb != nil {
		for _, ch := range changes {
			cb(ch.bar, ch.old, ch.new)
		}
	}
}

func overlaps(a0, a1, b0, b1 int) bool { return a0 < b1 && b0 < a1 }

// U8 returns the byte at off (device side; 0xFF past the end).
func (c *ConfigSpace) U8(off uint16) uint8 { return uint8(c.readRaw(off, 1)) }

// U16 returns the little-endian 16-bit value at off.
func (c *ConfigSpace) U16(off uint16) uint16 { return uint16(c.readRaw(off, 2)) }

// U32 returns the little-endian 32-bit value at off.
func (c *ConfigSpace) U32(off uint16) uint32 { return uint32(c.readRaw(off, 4)) }

func (c *ConfigSpace) readRaw(off uint16, n int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if int(off)+n > ConfigSize {
		return 1<<(8*n) - 1
	}
	return c.get(off, n)
}

// SetU8 stores v at off, ignoring write masks (device side).
func (c *ConfigSpace) SetU8(off uint16, v uint8) { c.writeRaw(off, uint64(v), 1) }

// SetU16 stores v little-endian at off, ignoring write masks.
func (c *ConfigSpace) SetU16(off uint16, v uint16) { c.writeRaw(off, uint64(v), 2) }

// SetU32 stores v little-endian at off, ignoring write masks.
func (c *ConfigSpace) SetU32(off uint16, v uint32) { c.writeRaw(off, uint64(v), 4) }

func (c *ConfigSpace) writeRaw(off uint16, v uint64, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < n && int(off)+i < ConfigSize; i++ {
		c.data[int(off)+i] = byte(v >> (8 * i))
	}
}

// SetWriteMask makes the bits set in mask guest-writable at off (and the
// others read-only), e.g. for a capability's control fields.
func (c *ConfigSpace) SetWriteMask(off uint16, mask []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range mask {
		if int(off)+i < ConfigSize {
			c.wmask[int(off)+i] = m
		}
	}
}

// Command returns the command register.
func (c *ConfigSpace) Command() uint16 { return c.U16(RegCommand) }

// SetStatus sets status register bits on behalf of the device, e.g. an
// error the guest acknowledges by writing 1.
func (c *ConfigSpace) SetStatus(bits uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.put16(RegStatus, uint16(c.get(RegStatus, 2))|bits)
}

// SetInterruptStatus sets or clears the status register's Interrupt
// Status bit, which mirrors the device's INTx# assertion.
func (c *ConfigSpace) SetInterruptStatus(asserted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := uint16(c.get(RegStatus, 2)) &^ statusIntx
	if asserted {
		s |= statusIntx
	}
	c.put16(RegStatus, s)
}

// AddCapability appends a capability with the given ID and body (the
// bytes after the ID and next-pointer) to the capability list and returns
// its offset (section 6.7). The body is read-only until SetWriteMask.
func (c *ConfigSpace) AddCapability(id byte, body []byte) (uint16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	off := c.nextCap
	size := (capHeaderLen + len(body) + 3) &^ 3
	if int(off)+size > ConfigSize {
		return 0, ErrNoSpace
	}
	c.data[off] = id
	c.data[off+1] = 0
	copy(c.data[off+capHeaderLen:], body)
	if c.lastCap == 0 {
		c.data[RegCapPtr] = byte(off)
	} else {
		c.data[c.lastCap+1] = byte(off)
	}
	c.lastCap = off
	c.nextCap = off + uint16(size)
	c.put16(RegStatus, uint16(c.get(RegStatus, 2))|StatusCapList)
	return off, nil
}

// ConfigState is a configuration space's contents, for snapshots.
type ConfigState struct {
	Data [ConfigSize]byte
}

// SaveState returns the configuration space contents.
func (c *ConfigSpace) SaveState() ConfigState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConfigState{Data: c.data}
}

// RestoreState loads s. The BAR registers keep this space's BAR layout
// (size and type bits), so a snapshot cannot break the sizing protocol;
// OnBARChange reports the mappings that moved.
func (c *ConfigSpace) RestoreState(s ConfigState) {
	c.mu.Lock()
	c.data = s.Data
	for i := range c.bars {
		off := RegBAR0 + 4*i
		for j := range 4 {
			o := off + j
			c.data[o] = c.data[o]&c.wmask[o] | c.barFlags(i)[j]
		}
	}
	changes := c.updateMappings()
	cb := c.OnBARChange
	c.mu.Unlock()
	if cb != nil {
		for _, ch := range changes {
			cb(ch.bar, ch.old, ch.new)
		}
	}
}
