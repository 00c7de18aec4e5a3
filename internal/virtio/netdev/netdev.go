// Package netdev is the virtio network device (virtio 1.2 section 5.1)
// over a Backend, normally a Linux TAP interface: one receive and one
// transmit queue, the MAC and link status in configuration space,
// checksum and TSO offloads passed through to the TAP, and mergeable
// receive buffers.
package netdev

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govisor/govisor/internal/virtio"
)

// Feature bits (5.1.3).
const (
	FeatureCsum      = 1 << 0
	FeatureGuestCsum = 1 << 1
	FeatureMTU       = 1 << 3
	FeatureMAC       = 1 << 5
	FeatureGuestTSO4 = 1 << 7
	FeatureGuestTSO6 = 1 << 8
	FeatureGuestUFO  = 1 << 10
	FeatureHostTSO4  = 1 << 11
	FeatureHostTSO6  = 1 << 12
	FeatureHostUFO   = 1 << 14
	FeatureMrgRxbuf  = 1 << 15
	FeatureStatus    = 1 << 16
	FeatureCtrlVQ    = 1 << 17
	FeatureMQ        = 1 << 22
)

// StatusLinkUp is the config status bit VIRTIO_NET_S_LINK_UP (5.1.4).
const StatusLinkUp = 1

// Queue indices (5.1.2): one receive/transmit pair.
const (
	QueueRx = 0
	QueueTx = 1
)

// Sizes the protocol and Linux fix.
const (
	// HeaderSize is struct virtio_net_hdr_v1 (5.1.6).
	HeaderSize = 12
	// MaxFrame is the largest frame without header: a 64 KiB GSO packet
	// plus Ethernet and VLAN headers, as Linux's virtio_net bounds it.
	MaxFrame = 65535 + 14 + 4 + 8
	// minFrame is an Ethernet header.
	minFrame = 14
	// QueueSize is each queue's default maximum size.
	QueueSize = 256
	// configSize: mac, status, max_virtqueue_pairs, mtu (5.1.4).
	configSize = 12
)

// Options configures a network device.
type Options struct {
	// MAC is the guest's address; empty picks a random locally
	// administered unicast address.
	MAC net.HardwareAddr
	// MTU, if not zero, is offered with VIRTIO_NET_F_MTU (68 to 65535).
	MTU int
	// NoOffloads offers no checksum or segmentation offloads.
	NoOffloads bool
	// NoMergeableBuffers does not offer VIRTIO_NET_F_MRG_RXBUF.
	NoMergeableBuffers bool
	// QueueSize is each queue's maximum size (default 256, a power of two).
	QueueSize uint16
}

// ErrOptions reports unusable options.
var ErrOptions = errors.New("netdev: invalid options")

// Counters are the device's traffic counts, for metrics. Bytes do not
// include the virtio header.
type Counters struct {
	RxPackets, RxBytes, RxDrops uint64
	TxPackets, TxBytes, TxDrops uint64
}

// Device is a virtio-net device.
type Device struct {
	be        Backend
	mac       [6]byte
	mtu       uint16
	features  uint64
	queueSize uint16
	linkUp    atomic.Bool

	notifyMu sync.Mutex
	notify   func()

	rxPackets, rxBytes, rxDrops atomic.Uint64
	txPackets, txBytes, txDrops atomic.Uint64

	rx rxState // owned by the receive worker

	mu   sync.Mutex
	stop chan struct{}
	wg   sync.WaitGroup
}

// New returns a network device whose frames go through be.
func New(be Backend, opts Options) (*Device, error) {
	d := &Device{be: be, queueSize: opts.QueueSize}
	if d.queueSize == 0 {
		d.queueSize = QueueSize
	}
	switch {
	case be == nil:
		return nil, fmt.Errorf("%w: no backend", ErrOptions)
	case d.queueSize < 2 || d.queueSize&(d.queueSize-1) != 0:
		return nil, fmt.Errorf("%w: queue size %d", ErrOptions, d.queueSize)
	case opts.MTU != 0 && (opts.MTU < 68 || opts.MTU > 65535):
		return nil, fmt.Errorf("%w: MTU %d (68 to 65535)", ErrOptions, opts.MTU)
	case len(opts.MAC) != 0 && len(opts.MAC) != 6:
		return nil, fmt.Errorf("%w: MAC %v is not 6 bytes", ErrOptions, opts.MAC)
	case len(opts.MAC) == 6 && opts.MAC[0]&1 != 0:
		return nil, fmt.Errorf("%w: MAC %v is multicast", ErrOptions, opts.MAC)
	}
	if len(opts.MAC) == 6 {
		copy(d.mac[:], opts.MAC)
	} else {
		d.mac = RandomMAC()
	}
	d.features = virtio.CommonFeatures | FeatureMAC | FeatureStatus
	if !opts.NoOffloads {
		d.features |= FeatureCsum | FeatureGuestCsum | FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureHostTSO4 | FeatureHostTSO6
	}
	if !opts.NoMergeableBuffers {
		d.features |= FeatureMrgRxbuf
	}
	if opts.MTU != 0 {
		d.mtu = uint16(opts.MTU)
		d.features |= FeatureMTU
	}
	d.linkUp.Store(true)
	d.rx.init(d.queueSize)
	return d, nil
}

// RandomMAC returns a random locally administered unicast address.
func RandomMAC() [6]byte {
	var m [6]byte
	rand.Read(m[:])
	m[0] = m[0]&^1 | 2
	return m
}

// MAC returns the guest's address.
func (d *Device) MAC() net.HardwareAddr { return append(net.HardwareAddr(nil), d.mac[:]...) }

// SetConfigNotifier sets the function that tells the driver the
// configuration changed, e.g. (*pcitransport.Transport).ConfigChanged;
// SetLink calls it.
func (d *Device) SetConfigNotifier(fn func()) {
	d.notifyMu.Lock()
	d.notify = fn
	d.notifyMu.Unlock()
}

// SetLink sets the link status the guest sees (VIRTIO_NET_S_LINK_UP)
// and signals a configuration change.
func (d *Device) SetLink(up bool) {
	if d.linkUp.Swap(up) == up {
		return
	}
	d.notifyMu.Lock()
	fn := d.notify
	d.notifyMu.Unlock()
	if fn != nil {
		fn()
	}
}

// Counters returns the traffic counts.
func (d *Device) Counters() Counters {
	return Counters{
		RxPackets: d.rxPackets.Load(), RxBytes: d.rxBytes.Load(), RxDrops: d.rxDrops.Load(),
		TxPackets: d.txPackets.Load(), TxBytes: d.txBytes.Load(), TxDrops: d.txDrops.Load(),
	}
}

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDNet }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes implements virtio.Device: one receive and one transmit
// queue (no control queue, so no multiqueue).
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{d.queueSize, d.queueSize} }

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var c [configSize]byte
	copy(c[:], d.mac[:])
	if d.linkUp.Load() {
		binary.LittleEndian.PutUint16(c[6:], StatusLinkUp)
	}
	binary.LittleEndian.PutUint16(c[8:], 1) // max_virtqueue_pairs
	binary.LittleEndian.PutUint16(c[10:], d.mtu)
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < configSize {
			data[i] = c[o]
		}
	}
}

// WriteConfig implements virtio.Device; the MAC is writable only with
// VIRTIO_NET_F_CTRL_MAC_ADDR's legacy form, which is not offered.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device: enables the offloads the driver
// accepts on the backend and starts the receive and transmit workers.
func (d *Device) Activate(ctx virtio.ActivateContext) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop != nil {
		return fmt.Errorf("netdev: already active")
	}
	if len(ctx.Queues) < 2 {
		return fmt.Errorf("netdev: %d queues, need receive and transmit", len(ctx.Queues))
	}
	if err := d.be.SetOffload(offloads(ctx.Features)); err != nil {
		return err
	}
	d.stop = make(chan struct{})
	if ctx.Queues[QueueRx] != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.serveRx(&ctx, d.stop)
		}()
	}
	if ctx.Queues[QueueTx] != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			var hdr [HeaderSize]byte
			virtio.ServeQueue(&ctx, QueueTx, d.stop, func(c *virtqueueChain) uint32 {
				d.transmit(ctx.Features, c, &hdr)
				return 0
			})
		}()
	}
	return nil
}

// offloads maps negotiated guest offloads to TUNSETOFFLOAD bits: the
// kernel may only hand the guest what it said it can take (5.1.6.4).
func offloads(f uint64) int {
	o := 0
	if f&FeatureGuestCsum != 0 {
		o |= TUNOffloadCsum
		if f&FeatureGuestTSO4 != 0 {
			o |= TUNOffloadTSO4
		}
		if f&FeatureGuestTSO6 != 0 {
			o |= TUNOffloadTSO6
		}
	}
	return o
}

// Reset implements virtio.Device: stops the workers, waking any blocked
// in the backend.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop == nil {
		return
	}
	close(d.stop)
	d.be.SetDeadline(time.Now())
	d.wg.Wait()
	d.be.SetDeadline(time.Time{})
	d.stop = nil
}
