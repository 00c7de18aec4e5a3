package vm

import (
	"fmt"
	"log/slog"

	"github.com/govisor/govisor/internal/iobus"
	"github.com/govisor/govisor/internal/legacy/acpipm"
	"github.com/govisor/govisor/internal/legacy/cmosrtc"
	"github.com/govisor/govisor/internal/legacy/i8042"
	"github.com/govisor/govisor/internal/legacy/uart8250"
	"github.com/govisor/govisor/internal/pci"
)

// ISA interrupt lines wired to the in-kernel PIC and IOAPIC.
const sciIRQ = 9

// DebugExitPort is the QEMU-compatible isa-debug-exit port test guests use.
const DebugExitPort = 0xF4

// irqLine returns a level callback for an ISA interrupt line.
func (m *Machine) irqLine(gsi uint32) func(bool) {
	return func(level bool) {
		if err := m.kvm.IRQLine(gsi, level); err != nil {
			slog.Warn("interrupt line", "gsi", gsi, "err", err)
		}
	}
}

func (m *Machine) reset(why string) func() {
	return func() { m.stop(Exit{Reason: ExitReset, Detail: why}) }
}

func (m *Machine) setupDevices() error {
	m.uart = uart8250.New(m.cfg.Console, m.irqLine(uart8250.COM1IRQ))
	kbd := i8042.New(m.reset("i8042 reset (0xFE)"))
	kbd.SetIRQ(m.irqLine(i8042.IRQ))
	low, high := uint64(0), uint64(0)
	for _, r := range m.mem.Regions() {
		if r.GPA < highMemStart {
			low += uint64(len(r.Host))
		} else {
			high += uint64(len(r.Host))
		}
	}
	rtc := cmosrtc.New(low, high, m.irqLine(cmosrtc.IRQ))
	pm := acpipm.New(func() { m.stop(Exit{Reason: ExitPowerOff}) }, m.sciSource(sciPM1))
	bridge := pci.NewBus(m.reset("reset control register (0xCF9)"))
	m.pm, m.pci, m.kbd, m.rtc = pm, bridge, kbd, rtc

	regs := []struct {
		base, size uint64
		dev        iobus.Device
	}{
		{uart8250.COM1Base, uart8250.Size, m.uart},
		{i8042.DataPort, 1, kbd.DataDevice()},
		{i8042.CommandPort, 1, kbd.CommandDevice()},
		{cmosrtc.Base, 2, rtc},
		{acpipm.EvtBase, 4, pm.EventDevice()},
		{acpipm.CntBase, 2, pm.ControlDevice()},
		{acpipm.TmrBase, 4, pm.TimerDevice()},
		{pci.ConfigAddressPort, 4, bridge.AddressDevice()},
		{pci.ConfigDataPort, 4, bridge.DataDevice()},
	}
	if m.cfg.DebugExit {
		regs = append(regs, struct {
			base, size uint64
			dev        iobus.Device
		}{DebugExitPort, 4, debugExit{m}})
	}
	for _, r := range regs {
		if err := m.pio.Register(r.base, r.size, r.dev); err != nil {
			return fmt.Errorf("vm: register device at port %#x: %w", r.base, err)
		}
	}
	return nil
}

// debugExit ends the machine with the value the guest writes, like QEMU's
// isa-debug-exit (which exits with (value << 1) | 1).
type debugExit struct{ m *Machine }

func (d debugExit) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
}

func (d debugExit) Write(_ uint64, data []byte) {
	v := 0
	for i := len(data) - 1; i >= 0; i-- {
		v = v<<8 | int(data[i])
	}
	d.m.stop(Exit{Reason: ExitDebug, Code: v})
}

// RegisterPIO maps a device into the guest's port-I/O space.
func (m *Machine) RegisterPIO(base, size uint64, dev iobus.Device) error {
	return m.pio.Register(base, size, dev)
}

// RegisterMMIO maps a device into the guest's physical address space (a
// range outside RAM, such as the PCI hole).
func (m *Machine) RegisterMMIO(base, size uint64, dev iobus.Device) error {
	return m.mmio.Register(base, size, dev)
}
