package devmgr

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/virtio"
)

// PCI hotplug: every slot left free at boot holds a hotSlot, which reads
// as absent (PCI 3.0 6.1: a read of a missing function master-aborts and
// returns all ones) until a device is plugged in. Telling the guest (the
// ACPI hotplug controller) is the caller's business.

// hotSlot is a hot-pluggable slot: the pci.Device the bus holds for it,
// forwarding to the plugged device's transport.
type hotSlot struct {
	mu  sync.RWMutex
	dev *Device
}

func (s *hotSlot) ConfigRead(offset uint16, data []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.dev == nil {
		for i := range data {
			data[i] = 0xFF // no device: the read master-aborts
		}
		return
	}
	s.dev.Transport.ConfigRead(offset, data)
}

func (s *hotSlot) ConfigWrite(offset uint16, data []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.dev != nil {
		s.dev.Transport.ConfigWrite(offset, data)
	}
}

func (s *hotSlot) device() *Device {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.dev
}

// Reserve makes every slot still free (after the boot devices) hot-pluggable
// and returns their bitmap (bit n: slot n), for the ACPI tables and the
// hotplug controller. Call it once, after Add and before the machine runs.
func (m *Manager) Reserve() (uint32, error) {
	var mask uint32
	for n := pci.FirstSlot; n < pci.NumSlots; n++ {
		s := &hotSlot{}
		if err := m.bus.AddDevice(n, s); err != nil {
			if errors.Is(err, pci.ErrSlotUsed) {
				continue
			}
			return 0, fmt.Errorf("hotplug slot %d: %w", n, err)
		}
		m.hot[n] = s
		mask |= 1 << n
	}
	return mask, nil
}

// hotSlots returns the hot-pluggable slot numbers, ascending.
func (m *Manager) hotSlots() []int {
	out := make([]int, 0, len(m.hot))
	for n := range m.hot {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// FreeSlot returns the lowest hot-pluggable slot without a device, or -1.
func (m *Manager) FreeSlot() int {
	for _, n := range m.hotSlots() {
		if m.hot[n].device() == nil {
			return n
		}
	}
	return -1
}

// IsHotSlot reports whether slot is hot-pluggable.
func (m *Manager) IsHotSlot(slot int) bool { return m.hot[slot] != nil }

// Plug makes dev's transport and puts it, under id, into the free
// hot-pluggable slot. The BAR stays unassigned: the guest's PCI core sizes
// and places it when it scans the slot, as for any hot-added function.
// closers release the device's backends when it closes; if Plug fails
// they are not run (the caller still owns them).
func (m *Manager) Plug(slot int, id string, dev virtio.Device, closers ...func() error) (*Device, error) {
	s := m.hot[slot]
	if s == nil || s.device() != nil {
		return nil, fmt.Errorf("%w: %d", ErrSlotNotFree, slot)
	}
	if m.lookup(id) != nil {
		return nil, fmt.Errorf("%w: %s", ErrDuplicateID, id)
	}
	tr, err := m.transport(dev)
	if err != nil {
		return nil, err
	}
	d := &Device{ID: id, Slot: slot, Hotplugged: true, Dev: dev, Transport: tr, closers: closers}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dev != nil {
		tr.Close()
		return nil, fmt.Errorf("%w: %d", ErrSlotNotFree, slot)
	}
	s.dev = d
	return d, nil
}

// Unplug takes the device out of slot and returns it, still open (the
// caller closes it, maybe later), or nil if the slot holds none. From its
// return on, the guest finds the slot empty.
func (m *Manager) Unplug(slot int) *Device {
	s := m.hot[slot]
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dev
	s.dev = nil
	return d
}
