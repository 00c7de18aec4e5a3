package acpipm

import (
	"sync"

	"github.com/govisor/govisor/internal/iobus"
)

// ResetPort is the PC chipset's reset control register (1 byte). On a
// machine with a PCI host bridge the bridge decodes it (see package pci);
// NewResetControl is for machines without one.
const ResetPort = 0xCF9

// Reset control bits (Intel ICH9 datasheet, 13.7.5 "RST_CNT").
const (
	rstSys  = 1 << 1 // SYS_RST: hard reset requested
	rstCPU  = 1 << 2 // RST_CPU: writing 1 resets
	rstFull = 1 << 3 // FULL_RST: power-cycle reset
)

type resetControl struct {
	mu    sync.Mutex
	val   byte
	reset func()
}

// NewResetControl returns the reset control register as an iobus.Device of
// size 1; a write with RST_CPU (bit 2) set calls reset (if not nil).
func NewResetControl(reset func()) iobus.Device { return &resetControl{reset: reset} }

// Read implements iobus.Device: the register keeps SYS_RST and FULL_RST.
func (r *resetControl) Read(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range data {
		data[i] = 0xFF
	}
	if offset == 0 && len(data) > 0 {
		data[0] = r.val
	}
}

// Write implements iobus.Device.
func (r *resetControl) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	r.mu.Lock()
	v := data[0]
	r.val = v & (rstSys | rstFull)
	r.mu.Unlock()
	if v&rstCPU != 0 && r.reset != nil {
		r.reset()
	}
}
