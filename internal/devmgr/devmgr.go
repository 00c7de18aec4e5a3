// Package devmgr is the VMM's device manager (as Firecracker's
// device_manager): it places virtio devices as PCI functions on bus 0,
// owns their transports and the backends they close, plugs and unplugs
// them at run time in the slots left free at boot, and knows every device
// by its ID, for saving and restoring them (persist.go).
package devmgr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
)

// Sentinel errors.
var (
	// ErrDuplicateID is returned when adding a device under an ID in use.
	ErrDuplicateID = errors.New("devmgr: device ID already in use")
	// ErrSlotNotFree is returned when plugging into a slot that is not
	// hot-pluggable or holds a device.
	ErrSlotNotFree = errors.New("devmgr: PCI slot is not a free hot-pluggable slot")
)

// Device is a virtio device the manager placed in a PCI slot.
type Device struct {
	ID         string // unique in the machine: vda, net0, vsock...
	Slot       int
	Hotplugged bool
	Dev        virtio.Device
	Transport  *pcitransport.Transport
	closers    []func() error // the device's backends, closed after it stops
}

// Close stops the device (its transport) and then closes its backends,
// returning their errors.
func (d *Device) Close() error {
	d.Transport.Close()
	var errs []error
	for _, c := range d.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// Manager places and keeps a machine's virtio-pci functions. A nil
// Manager has no devices (a machine built without any, in tests):
// Devices and Get find none, Quiesce, Unquiesce and Close do nothing.
type Manager struct {
	bus     *pci.Bus
	mem     virtio.Memory
	plat    pcitransport.Platform
	nextBAR uint64

	// cold are the devices placed at boot, in slot order; set up before
	// the machine runs and fixed from then on, so read without a lock.
	cold []*Device
	// hot are the hot-pluggable slots (Reserve), fixed once reserved; each
	// slot's lock guards the device in it.
	hot map[int]*hotSlot

	closeOnce sync.Once
}

// New returns a manager of bus's functions whose transports reach mem
// and plat; boot devices get their BARs from barBase up (in the 32-bit
// PCI window).
func New(bus *pci.Bus, mem virtio.Memory, plat pcitransport.Platform, barBase uint64) *Manager {
	return &Manager{bus: bus, mem: mem, plat: plat, nextBAR: barBase, hot: map[int]*hotSlot{}}
}

// Add places dev, under id, in the next free slot at boot and, as PC
// firmware does, assigns its BAR and enables memory decoding, so that the
// guest finds it ready. Devices whose configuration changes on their own
// (link status, balloon target) get their transport's notifier. closers
// release the device's backends when it closes; Add owns them from the
// call on and runs them itself if it fails.
func (m *Manager) Add(id string, dev virtio.Device, closers ...func() error) (_ *Device, err error) {
	defer func() {
		if err != nil {
			closeAll(closers)
		}
	}()
	if m.lookup(id) != nil {
		return nil, fmt.Errorf("%w: %s", ErrDuplicateID, id)
	}
	slot := pci.FirstSlot + len(m.cold)
	tr, err := m.transport(dev)
	if err != nil {
		return nil, err
	}
	if err := m.bus.AddDevice(slot, tr); err != nil {
		tr.Close()
		return nil, fmt.Errorf("at PCI slot %d: %w", slot, err)
	}
	addr := (m.nextBAR + pcitransport.BARSize - 1) &^ (pcitransport.BARSize - 1)
	m.nextBAR = addr + pcitransport.BARSize
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(addr))
	tr.ConfigWrite(uint16(0x10+4*pcitransport.BARIndex), b[:])
	binary.LittleEndian.PutUint32(b[:], uint32(addr>>32))
	tr.ConfigWrite(uint16(0x14+4*pcitransport.BARIndex), b[:])
	var cmd [2]byte
	tr.ConfigRead(pci.RegCommand, cmd[:])
	binary.LittleEndian.PutUint16(cmd[:], binary.LittleEndian.Uint16(cmd[:])|pci.CommandMemory)
	tr.ConfigWrite(pci.RegCommand, cmd[:])
	d := &Device{ID: id, Slot: slot, Dev: dev, Transport: tr, closers: closers}
	m.cold = append(m.cold, d)
	return d, nil
}

// transport makes dev's virtio-pci transport.
func (m *Manager) transport(dev virtio.Device) (*pcitransport.Transport, error) {
	tr, err := pcitransport.New(dev, m.mem, m.plat)
	if err != nil {
		return nil, err
	}
	if n, ok := dev.(interface{ SetConfigNotifier(func()) }); ok {
		n.SetConfigNotifier(tr.ConfigChanged)
	}
	return tr, nil
}

// Devices returns the devices placed at boot, in slot order.
func (m *Manager) Devices() []*Device {
	if m == nil {
		return nil
	}
	return slices.Clone(m.cold)
}

// Get returns the device with the given ID, boot or hot-plugged, or nil.
func (m *Manager) Get(id string) *Device {
	if m == nil {
		return nil
	}
	return m.lookup(id)
}

func (m *Manager) lookup(id string) *Device {
	for _, d := range m.cold {
		if d.ID == id {
			return d
		}
	}
	for _, s := range m.hot {
		if d := s.device(); d != nil && d.ID == id {
			return d
		}
	}
	return nil
}

// Quiesce stops every device's I/O (pcitransport.Transport.Quiesce), boot
// and hot-plugged. It takes only the hot slots' locks, so a caller may
// hold its own.
func (m *Manager) Quiesce() { m.eachTransport((*pcitransport.Transport).Quiesce) }

// Unquiesce restarts what Quiesce stopped.
func (m *Manager) Unquiesce() { m.eachTransport((*pcitransport.Transport).Unquiesce) }

func (m *Manager) eachTransport(f func(*pcitransport.Transport)) {
	if m == nil {
		return
	}
	for _, d := range m.cold {
		f(d.Transport)
	}
	for _, n := range m.hotSlots() {
		s := m.hot[n]
		s.mu.RLock()
		if s.dev != nil {
			f(s.dev.Transport)
		}
		s.mu.RUnlock()
	}
}

// Close stops and closes every device, the hot-plugged ones first; later
// calls do nothing. Quiesce may run meanwhile (a failing post-copy
// destination stops its devices while the machine closes).
func (m *Manager) Close() {
	if m == nil {
		return
	}
	m.closeOnce.Do(func() {
		for _, n := range m.hotSlots() {
			if d := m.Unplug(n); d != nil {
				_ = d.Close() // the machine is going away: nothing to tell
			}
		}
		for _, d := range m.cold {
			_ = d.Close()
		}
	})
}

func closeAll(closers []func() error) {
	for _, c := range closers {
		_ = c()
	}
}
