// Package virtio holds what every virtio device and transport shares
// (virtio 1.2): device status and feature bits, device IDs, the Device
// interface a device implements, and the context it is activated with.
package virtio

import (
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// Device status bits (2.1).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// Transport-independent feature bits (6).
const (
	FeatureRingIndirectDesc = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureRingEventIdx     = 1 << 29 // VIRTIO_F_EVENT_IDX
	FeatureVersion1         = 1 << 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlatform   = 1 << 33 // VIRTIO_F_ACCESS_PLATFORM (never offered: no IOMMU)
	FeatureRingPacked       = 1 << 34 // VIRTIO_F_RING_PACKED (not supported)
)

// CommonFeatures are the transport-independent features every govisor
// device offers (modern only: VERSION_1 is required, 6.1).
const CommonFeatures = FeatureVersion1 | FeatureRingEventIdx | FeatureRingIndirectDesc

// Device IDs (5).
const (
	IDNet     = 1
	IDBlock   = 2
	IDConsole = 3
	IDEntropy = 4
	IDBalloon = 5
	IDVsock   = 19
)

// Memory is guest memory as devices and queues see it.
type Memory = virtqueue.Memory

// Device is a virtio device behind a transport.
type Device interface {
	// DeviceID is the virtio device type (5).
	DeviceID() uint16
	// Features are the device-specific and transport-independent feature
	// bits offered.
	Features() uint64
	// QueueMaxSizes has one maximum size per virtqueue.
	QueueMaxSizes() []uint16
	// ReadConfig reads the device-specific configuration space at offset;
	// bytes past its end read as zero.
	ReadConfig(offset uint64, data []byte)
	// WriteConfig writes the device-specific configuration space.
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device after the driver set DRIVER_OK (3.1.1):
	// it starts the device's own goroutines, which serve the queues.
	Activate(ctx ActivateContext) error
	// Reset stops the device's goroutines (each finishes the chain it is
	// working on) and drops the queues; after it returns the device does
	// not touch guest memory.
	Reset()
}

// ActivateContext is what a device gets when the driver sets DRIVER_OK.
type ActivateContext struct {
	// Features are the negotiated feature bits.
	Features uint64
	// Mem is guest memory.
	Mem Memory
	// Queues has one entry per virtqueue; nil for a queue the driver did
	// not enable.
	Queues []*virtqueue.Queue
	// Notify has one channel per virtqueue that receives a value when the
	// driver kicks the queue (kicks coalesce: buffered, capacity 1).
	Notify []<-chan struct{}
	// Interrupt signals used buffers on a queue to the driver.
	Interrupt func(queue int)
	// NeedsReset reports a malformed ring or an internal failure: the
	// transport sets DEVICE_NEEDS_RESET and raises a configuration
	// change interrupt (2.1.2). The device stops using the queue.
	NeedsReset func(err error)
}
