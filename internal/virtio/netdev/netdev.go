// Package netdev is the virtio network device (virtio 1.2 section 5.1)
// over Backends, normally the queues of a Linux TAP interface: a receive
// and a transmit queue per backend (multiqueue with VIRTIO_NET_F_MQ), a
// control queue, the MAC, link status and announce request in
// configuration space, checksum and TSO offloads passed through to the
// TAP, and mergeable receive buffers.
package netdev

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// Feature bits (5.1.3).
const (
	FeatureCsum      = 1 << 0
	FeatureGuestCsum = 1 << 1
	FeatureMTU       = 1 << 3
	FeatureMAC       = 1 << 5
	FeatureGuestTSO4 = 1 << 7
	FeatureGuestTSO6 = 1 << 8
	FeatureGuestECN  = 1 << 9
	FeatureGuestUFO  = 1 << 10
	FeatureHostTSO4  = 1 << 11
	FeatureHostTSO6  = 1 << 12
	FeatureHostECN   = 1 << 13
	FeatureHostUFO   = 1 << 14
	FeatureMrgRxbuf  = 1 << 15
	FeatureStatus    = 1 << 16
	FeatureCtrlVQ    = 1 << 17
	FeatureAnnounce  = 1 << 21 // VIRTIO_NET_F_GUEST_ANNOUNCE
	FeatureMQ        = 1 << 22
)

// Config status bits (5.1.4).
const (
	StatusLinkUp   = 1
	StatusAnnounce = 2
)

// Queue indices of the first pair (5.1.2): pair p uses 2p and 2p+1; the
// control queue follows the last pair (or is queue 2 without MQ).
const (
	QueueRx = 0
	QueueTx = 1
)

// MaxPairs bounds the queue pairs (the transport's queue limit).
const MaxPairs = 16

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

// QueueEnabler is implemented by backends whose queue can be taken out
// of the kernel's rotation while the guest does not use its pair (a
// multiqueue TAP).
type QueueEnabler interface {
	SetQueueEnabled(on bool) error
}

// Device is a virtio-net device.
type Device struct {
	bes       []Backend // one per queue pair
	mac       [6]byte
	mtu       uint16
	features  uint64
	queueSize uint16
	linkUp    atomic.Bool
	announce  atomic.Bool

	activeMu sync.Mutex
	active   int // queue pairs the driver uses (VQ_PAIRS_SET)

	notifyMu sync.Mutex
	notify   func()

	rxPackets, rxBytes, rxDrops atomic.Uint64
	txPackets, txBytes, txDrops atomic.Uint64

	rx []rxState // per pair, owned by its receive worker

	mu      sync.Mutex
	workers virtio.Workers // receive, transmit and control workers (mu)
}

// New returns a network device whose frames go through be.
func New(be Backend, opts Options) (*Device, error) {
	return NewMultiqueue([]Backend{be}, opts)
}

// NewMultiqueue returns a network device with one queue pair per
// backend (VIRTIO_NET_F_MQ if more than one), e.g. the queues of
// OpenTAPQueues.
func NewMultiqueue(bes []Backend, opts Options) (*Device, error) {
	d := &Device{bes: append([]Backend(nil), bes...), queueSize: opts.QueueSize, active: 1}
	if d.queueSize == 0 {
		d.queueSize = QueueSize
	}
	switch {
	case len(bes) == 0 || len(bes) > MaxPairs:
		return nil, fmt.Errorf("%w: %d backends (1 to %d)", ErrOptions, len(bes), MaxPairs)
	case slices.Contains(bes, nil):
		return nil, fmt.Errorf("%w: nil backend", ErrOptions)
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
	d.features = virtio.CommonFeatures | FeatureMAC | FeatureStatus | FeatureCtrlVQ | FeatureAnnounce
	if len(bes) > 1 {
		d.features |= FeatureMQ
	}
	if !opts.NoOffloads {
		// ECN lets TSO carry segments with CWR set instead of the guest
		// (or the host) segmenting those in software (5.1.3.1: each ECN
		// bit needs a TSO bit of its side, which is offered with it).
		d.features |= FeatureCsum | FeatureGuestCsum | FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN |
			FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN
	}
	if !opts.NoMergeableBuffers {
		d.features |= FeatureMrgRxbuf
	}
	if opts.MTU != 0 {
		d.mtu = uint16(opts.MTU)
		d.features |= FeatureMTU
	}
	d.linkUp.Store(true)
	d.rx = make([]rxState, len(bes))
	for i := range d.rx {
		d.rx[i].init(d.queueSize)
	}
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
	d.configChanged()
}

// Announce asks the guest to announce itself on the network with
// gratuitous packets (VIRTIO_NET_S_ANNOUNCE), e.g. after live migration;
// it does nothing unless the driver negotiated GUEST_ANNOUNCE.
func (d *Device) Announce() {
	d.announce.Store(true)
	d.configChanged()
}

func (d *Device) configChanged() {
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

// QueueMaxSizes implements virtio.Device: a receive and a transmit
// queue per pair, then the control queue.
func (d *Device) QueueMaxSizes() []uint16 {
	s := make([]uint16, 2*len(d.bes)+1)
	for i := range s {
		s[i] = d.queueSize
	}
	return s
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var c [configSize]byte
	copy(c[:], d.mac[:])
	var st uint16
	if d.linkUp.Load() {
		st |= StatusLinkUp
	}
	if d.announce.Load() {
		st |= StatusAnnounce
	}
	binary.LittleEndian.PutUint16(c[6:], st)
	binary.LittleEndian.PutUint16(c[8:], uint16(len(d.bes)))
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
// accepts on the backends and starts a receive and a transmit worker per
// queue pair, and the control queue's.
func (d *Device) Activate(ctx virtio.ActivateContext) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.workers.Active() {
		return fmt.Errorf("netdev: already active")
	}
	// Without MQ the driver uses one pair and the control queue is
	// queue 2 (5.1.2).
	pairs := 1
	if ctx.Features&FeatureMQ != 0 {
		pairs = len(d.bes)
	}
	if len(ctx.Queues) < 2*pairs+1 {
		return fmt.Errorf("netdev: %d queues for %d pairs", len(ctx.Queues), pairs)
	}
	ctrl := ctx.Queues[2*pairs]
	if ctx.Features&FeatureCtrlVQ == 0 {
		ctrl = nil
	}
	d.activeMu.Lock()
	active := min(d.active, pairs)
	d.activeMu.Unlock()
	if ctrl == nil || ctrl.SaveState() == (virtqueue.State{Config: ctrl.Config()}) {
		// A control queue set up anew: the driver starts with one pair
		// (5.1.6.5.5).
		active = 1
	}
	off := offloads(ctx.Features)
	for _, be := range d.bes {
		if err := be.SetOffload(off); err != nil {
			return err
		}
	}
	if err := d.setActive(active); err != nil {
		return err
	}
	d.workers.Start()
	for p := range pairs {
		if ctx.Queues[2*p] != nil {
			d.workers.Go(func(stop <-chan struct{}) { d.serveRx(&ctx, p, stop) })
		}
		if ctx.Queues[2*p+1] != nil {
			d.workers.Go(func(stop <-chan struct{}) {
				var hdr [HeaderSize]byte
				virtio.ServeQueue(&ctx, 2*p+1, stop, func(c *virtqueueChain) uint32 {
					d.transmit(p, ctx.Features, c, &hdr)
					return 0
				})
			})
		}
	}
	if ctrl != nil {
		d.workers.Go(func(stop <-chan struct{}) {
			virtio.ServeQueue(&ctx, 2*pairs, stop, func(c *virtqueueChain) uint32 {
				return d.control(ctx.Features, pairs, c)
			})
		})
	}
	return nil
}

// enableQueues keeps the first n backends in the kernel's rotation and
// takes the others out, so no traffic waits on a pair the guest ignores.
func (d *Device) enableQueues(n int) error {
	for i, be := range d.bes {
		if qe, ok := be.(QueueEnabler); ok && len(d.bes) > 1 {
			if err := qe.SetQueueEnabled(i < n); err != nil {
				return err
			}
		}
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
		if f&FeatureGuestECN != 0 && o&(TUNOffloadTSO4|TUNOffloadTSO6) != 0 {
			o |= TUNOffloadTSOECN
		}
	}
	return o
}

// Reset implements virtio.Device: stops the workers, waking any blocked
// in the backend. (Not Workers.Reset: the backends' deadlines must be
// cleared once the workers are gone, still under the lock.)
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	stopped := d.workers.Stop(func() {
		for _, be := range d.bes {
			be.SetDeadline(time.Now())
		}
	})
	if stopped {
		for _, be := range d.bes {
			be.SetDeadline(time.Time{})
		}
	}
}
