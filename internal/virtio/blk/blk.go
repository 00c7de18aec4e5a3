// Package blk is the virtio block device (virtio 1.2 section 5.2) backed by
// a diskimage.Image: raw files, qcow2 and the other formats. Requests are
// served by one goroutine per request queue, never on vCPU threads, with
// guest buffers handed to the image without copying.
package blk

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/virtio"
)

// Discarder is implemented by images that can deallocate a byte range
// (a raw file punches a hole); the range then reads as zeros.
type Discarder interface {
	Discard(off, n int64) error
}

// ZeroWriter is implemented by images that can zero a byte range without
// writing zeros, deallocating it if unmap is set.
type ZeroWriter interface {
	WriteZeroes(off, n int64, unmap bool) error
}

// VectorIO is implemented by images that move several buffers at one
// disk offset in one system call (preadv/pwritev): a request's guest
// buffers then reach the image whole instead of one call per buffer.
// Each behaves as ReadAt or WriteAt of the buffers laid end to end.
type VectorIO interface {
	ReadvAt(bufs [][]byte, off int64) (int, error)
	WritevAt(bufs [][]byte, off int64) (int, error)
}

// Options configures a block device.
type Options struct {
	// ReadOnly offers VIRTIO_BLK_F_RO and fails writes with IOERR.
	ReadOnly bool
	// Serial is returned by GET_ID (at most 20 bytes are used).
	Serial string
	// NumQueues is the number of request queues (default 1; more offer
	// VIRTIO_BLK_F_MQ).
	NumQueues int
	// QueueSize is each queue's maximum size (default 256, power of two).
	QueueSize uint16
	// BlockSize is the logical block size reported with BLK_SIZE
	// (default 512; a power of two from 512 to 64 KiB).
	BlockSize uint32
}

// ErrOptions reports unusable options.
var ErrOptions = errors.New("blk: invalid options")

// Device is a virtio-blk device.
type Device struct {
	img       diskimage.Image
	discarder Discarder
	zeroer    ZeroWriter
	vec       VectorIO // nil: one ReadAt/WriteAt per guest buffer
	readOnly  bool
	serial    [IDBytes]byte
	capacity  uint64 // in 512-byte sectors
	numQueues int
	queueSize uint16
	blockSize uint32
	features  uint64
	config    [configSize]byte
	ioErrors  atomic.Uint64
	stats     counters

	mu      sync.Mutex
	workers virtio.Workers // one per enabled queue (mu)
}

// New returns a block device serving img.
func New(img diskimage.Image, opts Options) (*Device, error) {
	d := &Device{img: img, readOnly: opts.ReadOnly, numQueues: opts.NumQueues, queueSize: opts.QueueSize, blockSize: opts.BlockSize}
	if d.numQueues == 0 {
		d.numQueues = 1
	}
	if d.queueSize == 0 {
		d.queueSize = 256
	}
	if d.blockSize == 0 {
		d.blockSize = SectorSize
	}
	switch {
	case d.numQueues < 1 || d.numQueues > 63:
		return nil, fmt.Errorf("%w: %d queues (1 to 63)", ErrOptions, d.numQueues)
	case d.queueSize < 4 || d.queueSize&(d.queueSize-1) != 0:
		return nil, fmt.Errorf("%w: queue size %d", ErrOptions, d.queueSize)
	case d.blockSize < SectorSize || d.blockSize > 1<<16 || d.blockSize&(d.blockSize-1) != 0:
		return nil, fmt.Errorf("%w: block size %d", ErrOptions, d.blockSize)
	case img.VirtualSize() < 0:
		return nil, fmt.Errorf("%w: negative disk size", ErrOptions)
	}
	copy(d.serial[:], opts.Serial)
	d.vec, _ = img.(VectorIO)
	d.capacity = uint64(img.VirtualSize()) / SectorSize
	d.features = virtio.CommonFeatures | FeatureSegMax | FeatureBlkSize | FeatureFlush | FeatureTopology
	if d.numQueues > 1 {
		d.features |= FeatureMQ
	}
	if d.readOnly {
		d.features |= FeatureRO
	} else {
		d.features |= FeatureWriteZeroes
		if dc, ok := img.(Discarder); ok {
			d.discarder = dc
			d.features |= FeatureDiscard
		}
		if zw, ok := img.(ZeroWriter); ok {
			d.zeroer = zw
		}
	}
	d.buildConfig()
	return d, nil
}

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDBlock }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes implements virtio.Device.
func (d *Device) QueueMaxSizes() []uint16 {
	s := make([]uint16, d.numQueues)
	for i := range s {
		s[i] = d.queueSize
	}
	return s
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < configSize {
			data[i] = d.config[o]
		}
	}
}

// WriteConfig implements virtio.Device; nothing is writable without
// VIRTIO_BLK_F_CONFIG_WCE, which is not offered.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device: one worker per enabled queue.
func (d *Device) Activate(ctx virtio.ActivateContext) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.workers.Active() {
		return fmt.Errorf("blk: already active")
	}
	if ctx.Features&FeatureMQ == 0 && len(ctx.Queues) > 1 {
		// Without MQ the driver uses only queue 0 (5.2.5).
		ctx.Queues = ctx.Queues[:1]
	}
	d.workers.Start()
	for qi := range ctx.Queues {
		if ctx.Queues[qi] == nil {
			continue
		}
		d.workers.Go(func(stop <-chan struct{}) {
			var r request
			virtio.ServeQueue(&ctx, qi, stop, func(c *virtqueueChain) uint32 { return d.handle(c, &r) })
		})
	}
	return nil
}

// Reset implements virtio.Device: stops the workers after their current
// request.
func (d *Device) Reset() { d.workers.Reset(&d.mu) }

// IOErrors counts requests that failed with an I/O error from the image.
func (d *Device) IOErrors() uint64 { return d.ioErrors.Load() }

// State is the device state for snapshots: what must match the disk the
// snapshot is restored with.
type State struct {
	Capacity uint64
	ReadOnly bool
	Serial   [IDBytes]byte
}

// SaveState returns the device state.
func (d *Device) SaveState() State {
	return State{Capacity: d.capacity, ReadOnly: d.readOnly, Serial: d.serial}
}

// RestoreState checks that s describes this device's disk.
func (d *Device) RestoreState(s State) error {
	if s.Capacity != d.capacity || s.ReadOnly != d.readOnly {
		return fmt.Errorf("blk: restore: snapshot disk has %d sectors (read-only %v), this one %d (read-only %v)",
			s.Capacity, s.ReadOnly, d.capacity, d.readOnly)
	}
	d.serial = s.Serial
	return nil
}
