// Package rng is the virtio entropy device (virtio 1.2 section 5.4): one
// request queue whose writable buffers it fills from the host's
// getrandom(2), through crypto/rand.
package rng

import (
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// QueueSize is the request queue's maximum size.
const QueueSize = 256

// Device is a virtio-rng device.
type Device struct {
	mu      sync.Mutex
	workers virtio.Workers // the queue's (mu)
}

// New returns an entropy device.
func New() *Device { return &Device{} }

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDEntropy }

// Features implements virtio.Device: no device-specific features (5.4.3).
func (d *Device) Features() uint64 { return virtio.CommonFeatures }

// QueueMaxSizes implements virtio.Device: one request queue (5.4.2).
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device; there is no configuration (5.4.4).
func (d *Device) ReadConfig(offset uint64, data []byte) { clear(data) }

// WriteConfig implements virtio.Device and ignores the write.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device: starts the queue worker.
func (d *Device) Activate(ctx virtio.ActivateContext) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.workers.Active() {
		return fmt.Errorf("rng: already active")
	}
	d.workers.Start()
	d.workers.Go(func(stop <-chan struct{}) { virtio.ServeQueue(&ctx, 0, stop, fill) })
	return nil
}

// MaxRequest bounds the bytes filled per request; the used length tells
// the driver how many it got (5.4.6).
const MaxRequest = 1 << 20

// fill writes random bytes into the writable buffers (5.4.6).
func fill(c *virtqueue.Chain) uint32 {
	n := uint32(0)
	for _, b := range c.Writable {
		if n == MaxRequest {
			break
		}
		b = b[:min(uint32(len(b)), MaxRequest-n)]
		if _, err := rand.Read(b); err != nil {
			// crypto/rand does not fail on Linux; return what was filled.
			return n
		}
		n += uint32(len(b))
	}
	return n
}

// Reset implements virtio.Device: stops the worker.
func (d *Device) Reset() { d.workers.Reset(&d.mu) }

// State is the device's state for snapshots (it has none beyond the
// transport's and the queue's).
type State struct{}

// SaveState returns the device state.
func (d *Device) SaveState() State { return State{} }

// RestoreState loads s.
func (d *Device) RestoreState(s State) error { return nil }
