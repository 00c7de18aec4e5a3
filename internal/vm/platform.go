package vm

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/iobus"
	"github.com/govisor/govisor/internal/kvm"
)

// platform gives PCI devices what they need from the VM: MMIO mappings for
// their BARs, MSI delivery and doorbells that stay inside KVM (ioeventfd).
type platform struct{ m *Machine }

// MapMMIO maps a BAR at the address the guest (or govisor) assigned.
func (p platform) MapMMIO(base, size uint64, dev iobus.Device) error {
	return p.m.mmio.Register(base, size, dev)
}

// UnmapMMIO removes a BAR mapping when the guest moves or disables it.
func (p platform) UnmapMMIO(base uint64) { p.m.mmio.Unregister(base) }

// SignalMSI injects one MSI/MSI-X message (KVM_SIGNAL_MSI).
func (p platform) SignalMSI(addr uint64, data uint32) error {
	return p.m.kvm.SignalMSI(kvm.MSI{AddressLo: uint32(addr), AddressHi: uint32(addr >> 32), Data: data})
}

// RegisterNotify binds an eventfd to guest writes at addr (KVM_IOEVENTFD), so
// a virtqueue kick wakes the device's goroutine without a VM exit to user
// space. Reads of the returned file yield the 8-byte eventfd counter.
func (p platform) RegisterNotify(addr uint64, length uint32, datamatch *uint64) (io.ReadCloser, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("vm: eventfd for doorbell at %#x: %w", addr, err)
	}
	if err := p.m.kvm.IOEventFD(fd, addr, length, false, datamatch, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	p.m.mu.Lock()
	if p.m.notifiers == nil {
		p.m.notifiers = map[uint64]notifier{}
	}
	p.m.notifiers[addr] = notifier{fd: fd, length: length, match: datamatch}
	p.m.mu.Unlock()
	return os.NewFile(uintptr(fd), fmt.Sprintf("ioeventfd@%#x", addr)), nil
}

// UnregisterNotify unbinds the doorbell at addr; the file returned by
// RegisterNotify is closed by its owner.
func (p platform) UnregisterNotify(addr uint64) {
	p.m.mu.Lock()
	n, ok := p.m.notifiers[addr]
	delete(p.m.notifiers, addr)
	p.m.mu.Unlock()
	if ok {
		_ = p.m.kvm.IOEventFD(n.fd, addr, n.length, false, n.match, true)
	}
}

type notifier struct {
	fd     int
	length uint32
	match  *uint64
}
