// Package iobus dispatches guest port-I/O and MMIO accesses to the device
// registered at the accessed address.
package iobus

import (
	"fmt"
	"sort"
	"sync"
)

// Device handles guest accesses to the address range it is registered at.
// Offsets are relative to the start of that range; len(data) is 1, 2, 4 or 8.
type Device interface {
	// Read fills data with the register contents at offset.
	Read(offset uint64, data []byte)
	// Write stores data into the register at offset.
	Write(offset uint64, data []byte)
}

type mapping struct {
	base, size uint64
	dev        Device
}

// Bus is an address space (port I/O or MMIO) of non-overlapping device ranges.
// It is safe for concurrent use by several vCPU threads.
type Bus struct {
	mu   sync.RWMutex
	maps []mapping // sorted by base
}

// Register maps dev at [base, base+size). Overlapping ranges are refused.
func (b *Bus) Register(base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("iobus: bad range %#x+%#x", base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sort.Search(len(b.maps), func(i int) bool { return b.maps[i].base >= base })
	if i > 0 && b.maps[i-1].base+b.maps[i-1].size > base {
		return fmt.Errorf("iobus: range %#x+%#x overlaps %#x+%#x", base, size, b.maps[i-1].base, b.maps[i-1].size)
	}
	if i < len(b.maps) && base+size > b.maps[i].base {
		return fmt.Errorf("iobus: range %#x+%#x overlaps %#x+%#x", base, size, b.maps[i].base, b.maps[i].size)
	}
	b.maps = append(b.maps, mapping{})
	copy(b.maps[i+1:], b.maps[i:])
	b.maps[i] = mapping{base, size, dev}
	return nil
}

// Unregister removes the range that starts at base (used when a guest moves a PCI BAR).
func (b *Bus) Unregister(base uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range b.maps {
		if m.base == base {
			b.maps = append(b.maps[:i], b.maps[i+1:]...)
			return true
		}
	}
	return false
}

func (b *Bus) find(addr uint64) (Device, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.maps), func(i int) bool { return b.maps[i].base > addr }) - 1
	if i < 0 || addr-b.maps[i].base >= b.maps[i].size {
		return nil, 0, false
	}
	return b.maps[i].dev, addr - b.maps[i].base, true
}

// Read dispatches a read at addr. Unclaimed addresses read as all ones, as on
// a PC bus with nothing driving it; the result reports whether a device answered.
func (b *Bus) Read(addr uint64, data []byte) bool {
	dev, off, ok := b.find(addr)
	if !ok {
		for i := range data {
			data[i] = 0xff
		}
		return false
	}
	dev.Read(off, data)
	return true
}

// Write dispatches a write at addr; writes to unclaimed addresses are dropped.
func (b *Bus) Write(addr uint64, data []byte) bool {
	dev, off, ok := b.find(addr)
	if !ok {
		return false
	}
	dev.Write(off, data)
	return true
}
