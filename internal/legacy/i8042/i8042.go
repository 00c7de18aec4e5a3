// Package i8042 emulates the PC keyboard controller (Intel 8042) far enough
// for firmware and kernels to probe it and its keyboard, and to reset the
// machine through it.
//
// A keyboard without keys is attached (keyboard.go): it answers commands
// and never types; its bytes raise IRQ 1 when the command byte enables
// it. No mouse: bytes for it are dropped. Command set as in the IBM PC/AT
// Technical Reference, "Keyboard controller commands".
//
// Register it either as two one-port devices,
//
//	bus.Register(i8042.DataPort, 1, c.DataDevice())
//	bus.Register(i8042.CommandPort, 1, c.CommandDevice())
//
// (preferred: ports 0x61-0x63 stay free for the PIT's speaker port), or as
// the Controller itself at DataPort with size Size.
package i8042

import "sync"

// DataPort is the controller's data port (read output buffer, write data).
const DataPort = 0x60

// CommandPort is the controller's status (read) and command (write) port.
const CommandPort = 0x64

// IRQ is the keyboard's ISA interrupt line.
const IRQ = 1

// Size is the span to register the Controller itself at DataPort with.
const Size = CommandPort - DataPort + 1

// Status register bits.
const (
	stsOBF     = 0x01 // output buffer full
	stsSys     = 0x04 // system flag, set once the self-test passed
	stsCmd     = 0x08 // last write was to the command port
	stsUnlock  = 0x10 // keyboard not inhibited
	stsAuxData = 0x20 // output buffer holds data from the auxiliary device
)

// Command byte (controller RAM byte 0) bits.
const (
	ctrKbdInt     = 0x01
	ctrSys        = 0x04
	ctrKbdDisable = 0x10
	ctrAuxDisable = 0x20
	ctrTranslate  = 0x40
	// ctrDefault is what a BIOS leaves: keyboard interrupt enabled,
	// system flag set, scan-code translation on.
	ctrDefault = 0x45
)

// Output port bits.
const (
	outReset = 0x01 // system reset line, active low
	outA20   = 0x02
)

// Controller commands (written to CommandPort).
const (
	cmdReadRAM       = 0x20 // 0x20-0x3F: read RAM byte n (0 = command byte)
	cmdWriteRAM      = 0x60 // 0x60-0x7F: write RAM byte n
	cmdAuxDisable    = 0xA7
	cmdAuxEnable     = 0xA8
	cmdAuxTest       = 0xA9
	cmdSelfTest      = 0xAA
	cmdKbdTest       = 0xAB
	cmdKbdDisable    = 0xAD
	cmdKbdEnable     = 0xAE
	cmdReadInput     = 0xC0
	cmdReadOutput    = 0xD0
	cmdWriteOutput   = 0xD1
	cmdWriteKbdBuf   = 0xD2
	cmdWriteAuxBuf   = 0xD3
	cmdWriteAux      = 0xD4
	cmdPulseOutput   = 0xF0 // 0xF0-0xFF: pulse output port bits that are 0
	selfTestPassed   = 0x55
	interfaceTestsOK = 0x00
)

// Controller is an emulated i8042. It is safe for concurrent use.
type Controller struct {
	mu      sync.Mutex
	ram     [32]byte // ram[0] is the command byte
	status  byte
	out     byte // output buffer (valid when status has OBF)
	outPort byte
	pending byte // command waiting for its data byte, 0 if none
	reset   func()
	kbd     keyboard
	queue   []byte // bytes from the keyboard not yet in the output buffer
	irq     func(level bool)
	irqHigh bool
}

// maxQueue bounds the keyboard's bytes waiting for the output buffer (a
// guest writing commands without reading the answers loses the oldest).
const maxQueue = 16

// New returns a controller in the state a BIOS leaves it in; reset is
// called when the guest pulses the CPU reset line (it may be nil).
func New(reset func()) *Controller {
	c := &Controller{reset: reset}
	c.ram[0] = ctrDefault
	c.status = stsSys | stsUnlock
	c.outPort = outReset | outA20
	return c
}

// SetIRQ connects IRQ 1: level is high while the output buffer holds a
// byte and the command byte enables the keyboard interrupt.
func (c *Controller) SetIRQ(irq func(level bool)) {
	c.mu.Lock()
	c.irq = irq
	c.mu.Unlock()
}

// DataDevice returns the iobus.Device for DataPort (size 1).
func (c *Controller) DataDevice() Port { return Port{c, 0} }

// CommandDevice returns the iobus.Device for CommandPort (size 1).
func (c *Controller) CommandDevice() Port { return Port{c, CommandPort - DataPort} }

// Port is one of the controller's two ports as an iobus.Device.
type Port struct {
	c   *Controller
	off uint64
}

// Read implements iobus.Device; bytes past the port read as 0xFF.
func (p Port) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0xFF
	}
	if offset == 0 && len(data) > 0 {
		data[0] = p.c.readPort(p.off)
	}
}

// Write implements iobus.Device; only the first byte at offset 0 counts.
func (p Port) Write(offset uint64, data []byte) {
	if offset == 0 && len(data) > 0 {
		p.c.writePort(p.off, data[0])
	}
}

// Read implements iobus.Device for the controller registered at DataPort
// with size Size; wide accesses are split into byte accesses.
func (c *Controller) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = c.readPort(offset + uint64(i))
	}
}

// Write implements iobus.Device; see Read.
func (c *Controller) Write(offset uint64, data []byte) {
	for i, v := range data {
		c.writePort(offset+uint64(i), v)
	}
}

func (c *Controller) readPort(off uint64) byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch off {
	case 0:
		// Reading empties the buffer; with nothing new it returns the
		// stale byte, as the real controller does.
		c.status &^= stsOBF | stsAuxData
		v := c.out
		c.fill()
		c.updateIRQ()
		return v
	case CommandPort - DataPort:
		return c.status
	}
	return 0xFF
}

func (c *Controller) writePort(off uint64, v byte) {
	c.mu.Lock()
	var doReset bool
	switch off {
	case 0:
		c.status &^= stsCmd
		doReset = c.writeData(v)
	case CommandPort - DataPort:
		c.status |= stsCmd
		doReset = c.command(v)
	}
	c.fill()
	c.updateIRQ()
	c.mu.Unlock()
	// Called unlocked: the VMM's reset handler may tear the VM down.
	if doReset && c.reset != nil {
		c.reset()
	}
}

// fill moves the keyboard's next byte into an empty output buffer, unless
// the command byte holds the keyboard interface disabled.
func (c *Controller) fill() {
	if c.status&stsOBF != 0 || len(c.queue) == 0 || c.ram[0]&ctrKbdDisable != 0 {
		return
	}
	c.push(c.queue[0], false)
	c.queue = c.queue[1:]
}

// irqLevel is IRQ 1's level: a keyboard byte waits and may interrupt.
func (c *Controller) irqLevel() bool {
	return c.status&(stsOBF|stsAuxData) == stsOBF && c.ram[0]&ctrKbdInt != 0
}

// updateIRQ sets IRQ 1's level from the output buffer and the command byte.
func (c *Controller) updateIRQ() {
	high := c.irqLevel()
	if c.irq != nil && high != c.irqHigh {
		c.irq(high)
	}
	c.irqHigh = high
}

// push places v in the output buffer. aux marks it as mouse data.
func (c *Controller) push(v byte, aux bool) {
	c.out = v
	c.status |= stsOBF
	c.status &^= stsAuxData
	if aux {
		c.status |= stsAuxData
	}
}

// command runs a controller command and reports whether it resets the CPU.
func (c *Controller) command(v byte) bool {
	c.pending = 0
	switch {
	case v >= cmdReadRAM && v < cmdReadRAM+32:
		c.push(c.ram[v-cmdReadRAM], false)
	case v >= cmdWriteRAM && v < cmdWriteRAM+32:
		c.pending = v
	case v == cmdAuxDisable:
		c.ram[0] |= ctrAuxDisable
	case v == cmdAuxEnable:
		c.ram[0] &^= ctrAuxDisable
	case v == cmdAuxTest, v == cmdKbdTest:
		c.push(interfaceTestsOK, false)
	case v == cmdSelfTest:
		c.status |= stsSys
		c.push(selfTestPassed, false)
	case v == cmdKbdDisable:
		c.ram[0] |= ctrKbdDisable
	case v == cmdKbdEnable:
		c.ram[0] &^= ctrKbdDisable
	case v == cmdReadInput:
		c.push(0x80, false) // keyboard not inhibited
	case v == cmdReadOutput:
		c.push(c.outPort, false)
	case v == cmdWriteOutput, v == cmdWriteKbdBuf, v == cmdWriteAuxBuf, v == cmdWriteAux:
		c.pending = v
	case v >= cmdPulseOutput:
		// Bits 3:0 that are 0 are pulsed low; bit 0 is the reset line.
		return v&outReset == 0
	}
	return false
}

// writeData handles a data-port write and reports whether it resets the CPU.
func (c *Controller) writeData(v byte) bool {
	cmd := c.pending
	c.pending = 0
	switch {
	case cmd >= cmdWriteRAM && cmd < cmdWriteRAM+32:
		c.ram[cmd-cmdWriteRAM] = v
		if cmd == cmdWriteRAM {
			c.status = c.status&^stsSys | v&ctrSys
		}
	case cmd == cmdWriteOutput:
		c.outPort = v
		return v&outReset == 0
	case cmd == cmdWriteKbdBuf:
		c.push(v, false)
	case cmd == cmdWriteAuxBuf:
		c.push(v, true)
	case cmd == 0:
		// Sending to the keyboard enables its interface again, as the
		// 8042 does (and QEMU's model).
		c.ram[0] &^= ctrKbdDisable
		c.queue = append(c.queue, c.kbd.write(v, c.ram[0]&ctrTranslate != 0)...)
		if n := len(c.queue); n > maxQueue {
			c.queue = c.queue[n-maxQueue:]
		}
	}
	// cmdWriteAux goes to a mouse that is not there.
	return false
}

// State is the controller's state, for snapshots and migration.
type State struct {
	RAM        [32]byte
	Status     byte
	Output     byte
	OutputPort byte
	Pending    byte
}

// SaveState returns the controller's state.
func (c *Controller) SaveState() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return State{RAM: c.ram, Status: c.status, Output: c.out, OutputPort: c.outPort, Pending: c.pending}
}

// RestoreState loads s; a pending command that takes no data byte is dropped.
func (c *Controller) RestoreState(s State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ram, c.status, c.out, c.outPort = s.RAM, s.Status, s.Output, s.OutputPort
	c.pending = 0
	c.queue, c.kbd = nil, keyboard{}
	// The line's level is in the restored interrupt controller already.
	c.irqHigh = c.irqLevel()
	switch p := s.Pending; {
	case p >= cmdWriteRAM && p < cmdWriteRAM+32, p == cmdWriteOutput, p == cmdWriteKbdBuf, p == cmdWriteAuxBuf, p == cmdWriteAux:
		c.pending = p
	}
}
