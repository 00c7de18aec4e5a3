// Package pcitest is a fake VMM platform and a fake guest PCI driver for
// testing virtio devices through the real PCI transport: the platform
// routes MMIO through an iobus.Bus, delivers MSIs to channels and uses
// pipes as doorbells; the driver probes the function as Linux's
// virtio_pci_modern does.
package pcitest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/govisor/govisor/internal/iobus"
)

// ErrNoDoorbell is what RegisterNotify returns when doorbells are off.
var ErrNoDoorbell = errors.New("pcitest: doorbells disabled")

// MSIAddress is the address the fake driver programs into MSI-X entries.
const MSIAddress = 0xFEE00000

// Platform implements pcitransport.Platform for tests.
type Platform struct {
	// Bus holds the MMIO mappings.
	Bus iobus.Bus
	// NoDoorbells makes RegisterNotify fail, so kicks go through MMIO.
	NoDoorbells bool

	mu        sync.Mutex
	doorbells map[uint64]*os.File // write ends
	scratch   [8]byte
	vectors   [64]chan struct{}
	counts    [64]atomic.Int64
	BadMSIs   atomic.Int64 // messages to an unexpected address or vector
}

// NewPlatform returns a platform with no mappings.
func NewPlatform() *Platform {
	p := &Platform{doorbells: map[uint64]*os.File{}}
	for i := range p.vectors {
		p.vectors[i] = make(chan struct{}, 1)
	}
	return p
}

// MapMMIO implements pcitransport.Platform.
func (p *Platform) MapMMIO(base, size uint64, dev iobus.Device) error {
	return p.Bus.Register(base, size, dev)
}

// UnmapMMIO implements pcitransport.Platform.
func (p *Platform) UnmapMMIO(base uint64) { p.Bus.Unregister(base) }

// SignalMSI implements pcitransport.Platform: data is the vector number.
func (p *Platform) SignalMSI(addr uint64, data uint32) error {
	if addr != MSIAddress || data >= uint32(len(p.vectors)) {
		p.BadMSIs.Add(1)
		return fmt.Errorf("pcitest: MSI %#x/%#x", addr, data)
	}
	p.counts[data].Add(1)
	select {
	case p.vectors[data] <- struct{}{}:
	default:
	}
	return nil
}

// RegisterNotify implements pcitransport.Platform with a pipe.
func (p *Platform) RegisterNotify(addr uint64, length uint32, datamatch *uint64) (io.ReadCloser, error) {
	if p.NoDoorbells {
		return nil, ErrNoDoorbell
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.doorbells[addr]; old != nil {
		old.Close()
	}
	p.doorbells[addr] = w
	return r, nil
}

// UnregisterNotify implements pcitransport.Platform.
func (p *Platform) UnregisterNotify(addr uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.doorbells[addr]; w != nil {
		w.Close()
		delete(p.doorbells, addr)
	}
}

// Doorbells is the number of registered doorbells.
func (p *Platform) Doorbells() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.doorbells)
}

// Write16 performs a guest write of the 16-bit value v at addr: through the
// doorbell if one is registered there (as KVM would), else as MMIO.
func (p *Platform) Write16(addr uint64, v uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.doorbells[addr]; w != nil {
		binary.LittleEndian.PutUint64(p.scratch[:], 1)
		w.Write(p.scratch[:])
		return
	}
	binary.LittleEndian.PutUint16(p.scratch[:], v)
	p.Bus.Write(addr, p.scratch[:2])
}

// MSIs is how many messages vector v got.
func (p *Platform) MSIs(v int) int64 { return p.counts[v].Load() }

// Vector returns the channel that receives a value (coalesced) per MSI
// on vector v.
func (p *Platform) Vector(v int) <-chan struct{} { return p.vectors[v] }

// WithINTx is a Platform that also has an INTx# line
// (pcitransport.INTxPlatform).
type WithINTx struct {
	*Platform
	level atomic.Bool
}

// SetINTx implements pcitransport.INTxPlatform.
func (p *WithINTx) SetINTx(level bool) { p.level.Store(level) }

// Level reports whether INTx# is asserted.
func (p *WithINTx) Level() bool { return p.level.Load() }
