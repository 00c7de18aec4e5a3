package pci

import (
	"errors"
	"testing"

	"github.com/govisor/govisor/internal/iobus"
)

// machine wires a bus to a port-I/O bus as the VMM does.
type machine struct {
	io     iobus.Bus
	bus    *Bus
	resets int
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	m := &machine{}
	m.bus = NewBus(func() { m.resets++ })
	if err := m.io.Register(ConfigAddressPort, ConfigPortSize, m.bus.AddressDevice()); err != nil {
		t.Fatal(err)
	}
	if err := m.io.Register(ConfigDataPort, ConfigPortSize, m.bus.DataDevice()); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *machine) out(port uint64, size int, v uint32) {
	d := make([]byte, size)
	putLE(d, v)
	m.io.Write(port, d)
}

func (m *machine) in(port uint64, size int) uint32 {
	d := make([]byte, size)
	m.io.Read(port, d)
	return getLE(d)
}

func cfgAddr(bus, slot, fn, reg int) uint32 {
	return addrEnable | uint32(bus)<<16 | uint32(slot)<<11 | uint32(fn)<<8 | uint32(reg&0xFC)
}

// cfgRead reads a configuration register the way Linux's pci_conf1_read does.
func (m *machine) cfgRead(slot, reg, size int) uint32 {
	m.out(ConfigAddressPort, 4, cfgAddr(0, slot, 0, reg))
	return m.in(ConfigDataPort+uint64(reg&3), size)
}

func (m *machine) cfgWrite(slot, reg, size int, v uint32) {
	m.out(ConfigAddressPort, 4, cfgAddr(0, slot, 0, reg))
	m.out(ConfigDataPort+uint64(reg&3), size, v)
}

func TestConfigMechanism(t *testing.T) {
	m := newMachine(t)
	dev := NewConfigSpace(Header{VendorID: 0x1AF4, DeviceID: 0x1042, Class: 0x018000, Revision: 1, InterruptPin: 1})
	if err := m.bus.AddDevice(3, dev); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		addr       uint32
		port, size int
		want       uint32
	}{
		{"host bridge ids", cfgAddr(0, 0, 0, 0), 0, 4, HostBridgeDeviceID<<16 | HostBridgeVendorID},
		{"host bridge class", cfgAddr(0, 0, 0, 8), 0, 4, classHostBridge << 8},
		{"host bridge class word at 0xCFE", cfgAddr(0, 0, 0, 8), 2, 2, 0x0600},
		{"host bridge header type", cfgAddr(0, 0, 0, 0xC), 2, 1, 0},
		{"device ids", cfgAddr(0, 3, 0, 0), 0, 4, 0x10421AF4},
		{"device id word at 0xCFE", cfgAddr(0, 3, 0, 0), 2, 2, 0x1042},
		{"vendor byte at 0xCFD", cfgAddr(0, 3, 0, 0), 1, 1, 0x1A},
		{"unaligned word at 0xCFD", cfgAddr(0, 3, 0, 0), 1, 2, 0x421A},
		{"dword at 0xCFE runs off the port", cfgAddr(0, 3, 0, 0), 2, 4, 0xFFFF1042},
		{"interrupt pin", cfgAddr(0, 3, 0, 0x3C), 1, 1, 1},
		{"interrupt line unassigned", cfgAddr(0, 3, 0, 0x3C), 0, 1, 0xFF},
		{"absent slot", cfgAddr(0, 5, 0, 0), 0, 4, 0xFFFFFFFF},
		{"absent function", cfgAddr(0, 3, 1, 0), 0, 4, 0xFFFFFFFF},
		{"absent bus", cfgAddr(1, 3, 0, 0), 0, 2, 0xFFFF},
		{"enable bit clear", cfgAddr(0, 3, 0, 0) &^ addrEnable, 0, 4, 0xFFFFFFFF},
		{"register bits 1:0 ignored", cfgAddr(0, 3, 0, 0) | 3, 0, 4, 0x10421AF4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.out(ConfigAddressPort, 4, tt.addr)
			if got := m.in(ConfigDataPort+uint64(tt.port), tt.size); got != tt.want {
				t.Fatalf("read %d bytes at %#x = %#x, want %#x", tt.size, ConfigDataPort+tt.port, got, tt.want)
			}
		})
	}
}

func TestConfigAddressRegister(t *testing.T) {
	m := newMachine(t)
	m.out(ConfigAddressPort, 4, 0xFFFFFFFF)
	if got := m.in(ConfigAddressPort, 4); got != addrWritable {
		t.Fatalf("CONFIG_ADDRESS = %#x, want reserved bits clear (%#x)", got, uint32(addrWritable))
	}
	// Linux's pci_check_type1: a byte write to 0xCFB must not disturb
	// CONFIG_ADDRESS, and 0x80000000 must read back.
	m.out(0xCFB, 1, 0x01)
	m.out(ConfigAddressPort, 4, 0x80000000)
	if got := m.in(ConfigAddressPort, 4); got != 0x80000000 {
		t.Fatalf("CONFIG_ADDRESS = %#x after type 1 probe", got)
	}
	if got := m.in(ConfigAddressPort, 2); got != 0xFFFF {
		t.Fatalf("16-bit read of 0xCF8 = %#x, want 0xffff", got)
	}
	m.out(ConfigAddressPort, 2, 0)
	if got := m.in(ConfigAddressPort, 4); got != 0x80000000 {
		t.Fatalf("16-bit write changed CONFIG_ADDRESS to %#x", got)
	}
	// The sanity check finds the host bridge class.
	if got := m.cfgRead(0, 0x0A, 2); got != 0x0600 {
		t.Fatalf("class of 00:00.0 = %#x", got)
	}
}

func TestResetControl(t *testing.T) {
	m := newMachine(t)
	for _, tt := range []struct {
		v      byte
		resets int
		read   uint32
	}{{0x02, 0, 0x02}, {0x06, 1, 0x02}, {0x0E, 2, 0x0A}, {0x00, 2, 0}} {
		m.out(ResetControlPort, 1, uint32(tt.v))
		if got := m.in(ResetControlPort, 1); m.resets != tt.resets || got != tt.read {
			t.Fatalf("after writing %#x: resets %d, reads %#x; want %d, %#x", tt.v, m.resets, got, tt.resets, tt.read)
		}
	}
	m.out(ConfigAddressPort, 4, 0x80000600) // byte 1 has bit 2 set
	if m.resets != 2 {
		t.Fatal("a 32-bit CONFIG_ADDRESS write hit the reset control")
	}
	NewBus(nil).AddressDevice().Write(1, []byte{0x06}) // nil reset func
}

func TestPartialWrites(t *testing.T) {
	m := newMachine(t)
	dev := NewConfigSpace(Header{VendorID: 0x1AF4, DeviceID: 0x1000})
	if err := m.bus.AddDevice(1, dev); err != nil {
		t.Fatal(err)
	}
	m.cfgWrite(1, RegInterruptLine, 1, 11)
	m.cfgWrite(1, RegCommand, 2, CommandMemory|CommandBusMaster)
	m.cfgWrite(1, RegVendorID, 4, 0) // read-only
	m.cfgWrite(1, RegLatencyTimer, 1, 0x40)
	if got := m.cfgRead(1, RegInterruptLine, 1); got != 11 {
		t.Fatalf("interrupt line = %d", got)
	}
	if got := dev.Command(); got != CommandMemory|CommandBusMaster {
		t.Fatalf("command = %#x", got)
	}
	if got := m.cfgRead(1, RegVendorID, 4); got != 0x10001AF4 {
		t.Fatalf("ids writable: %#x", got)
	}
	if got := m.cfgRead(1, RegCacheLineSize, 4); got != 0x4000 {
		t.Fatalf("dword 0x0C = %#x", got)
	}
	m.cfgWrite(1, RegCommand, 4, 0xFFFF) // reserved command bits stay 0
	if got := dev.Command(); got != commandWritable {
		t.Fatalf("command = %#x, want %#x", got, commandWritable)
	}
	// Disabled cycles are dropped.
	m.out(ConfigAddressPort, 4, cfgAddr(0, 1, 0, RegInterruptLine)&^addrEnable)
	m.out(ConfigDataPort, 1, 5)
	if got := m.cfgRead(1, RegInterruptLine, 1); got != 11 {
		t.Fatalf("write with the enable bit clear landed: %d", got)
	}
}

func TestAddDevice(t *testing.T) {
	b := NewBus(nil)
	d := NewConfigSpace(Header{})
	for _, tt := range []struct {
		slot int
		err  error
	}{{0, ErrBadSlot}, {32, ErrBadSlot}, {-1, ErrBadSlot}, {1, nil}, {1, ErrSlotUsed}, {31, nil}} {
		if err := b.AddDevice(tt.slot, d); !errors.Is(err, tt.err) {
			t.Errorf("AddDevice(%d) = %v, want %v", tt.slot, err, tt.err)
		}
	}
}

func TestBusSaveRestore(t *testing.T) {
	m := newMachine(t)
	m.out(ConfigAddressPort, 4, cfgAddr(0, 3, 0, 0x10))
	m.out(ResetControlPort, 1, 0x08)
	s := m.bus.SaveState()
	b2 := NewBus(nil)
	b2.RestoreState(s)
	if got := b2.SaveState(); got != s {
		t.Fatalf("restored %+v, want %+v", got, s)
	}
}

// FuzzConfigPorts drives random port accesses to 0xCF8-0xCFF with a device
// that has every BAR kind and a capability; nothing may panic and the
// device's read-only identity must survive.
func FuzzConfigPorts(f *testing.F) {
	f.Add([]byte{0x20, 0x80, 0x00, 0x08, 0x10, 0x24, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{0x20, 0x80, 0x00, 0x08, 0x04, 0x14, 0x07, 0x00, 0x00, 0x00})
	f.Add([]byte{0x01, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, prog []byte) {
		var io iobus.Bus
		bus := NewBus(func() {})
		dev := fuzzDevice(t)
		if err := bus.AddDevice(1, dev); err != nil {
			t.Fatal(err)
		}
		if err := io.Register(ConfigAddressPort, ConfigPortSize, bus.AddressDevice()); err != nil {
			t.Fatal(err)
		}
		if err := io.Register(ConfigDataPort, ConfigPortSize, bus.DataDevice()); err != nil {
			t.Fatal(err)
		}
		for i := 0; i+5 < len(prog); i += 6 {
			op := prog[i]
			port := uint64(ConfigAddressPort + int(op&7))
			data := make([]byte, 1<<(op>>3&3))
			copy(data, prog[i+2:i+6])
			if prog[i+1]&1 == 0 {
				io.Write(port, data)
			} else {
				io.Read(port, data)
			}
		}
		if dev.U32(RegVendorID) != 0x10001AF4 || dev.U8(RegInterruptPin) != 1 {
			t.Fatalf("read-only identity changed: %#x", dev.U32(RegVendorID))
		}
		for i := range numBARs {
			if a := dev.BARAddress(i); a != Unmapped && a != dev.barAddressLocked(i) {
				t.Fatalf("BAR%d reported at %#x, programmed %#x", i, a, dev.barAddressLocked(i))
			}
		}
	})
}

func (c *ConfigSpace) barAddressLocked(i int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.barAddress(i)
}

// TestFixedFunction: a function added past function 0 answers at its
// address, and only there.
func TestFixedFunction(t *testing.T) {
	m := newMachine(t)
	pm := NewConfigSpace(Header{VendorID: 0x8086, DeviceID: 0x7113})
	if err := m.bus.AddFunction(1, 3, pm); err != nil {
		t.Fatal(err)
	}
	if err := m.bus.AddFunction(1, 3, pm); !errors.Is(err, ErrSlotUsed) {
		t.Errorf("second function at 1.3: %v, want ErrSlotUsed", err)
	}
	for _, bad := range [][2]int{{1, 0}, {1, 8}, {32, 1}, {-1, 1}} {
		if err := m.bus.AddFunction(bad[0], bad[1], pm); !errors.Is(err, ErrBadSlot) {
			t.Errorf("AddFunction(%d, %d): %v, want ErrBadSlot", bad[0], bad[1], err)
		}
	}
	m.out(ConfigAddressPort, 4, cfgAddr(0, 1, 3, 0))
	if got := m.in(ConfigDataPort, 4); got != 0x71138086 {
		t.Errorf("00:01.3 ids %#x", got)
	}
	m.out(ConfigAddressPort, 4, cfgAddr(0, 1, 0, 0))
	if got := m.in(ConfigDataPort, 4); got != 0xFFFFFFFF {
		t.Errorf("00:01.0 reads %#x, want absent", got)
	}
}
